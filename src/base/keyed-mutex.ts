// Serialises operations per key (a sandbox id): containerd may send Stop twice, or Status while
// Create is still running, and each sandbox's state must change one step at a time.
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const current = previous.then(work, work);
    const tail = current.catch(() => undefined);
    this.tails.set(key, tail);
    try {
      return await current;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

/** Serialises the operations on one object (a container, an exec): each waits for the one before. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(work: () => Promise<T>): Promise<T> {
    const current = this.tail.then(work, work);
    this.tail = current.catch(() => undefined);
    return current;
  }
}
