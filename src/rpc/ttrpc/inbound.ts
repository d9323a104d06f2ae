// Messages received on one stream, held until the code reading the stream asks for them, and
// the read throttle that turns a full queue into back-pressure on the socket.

/** What a ReadThrottle stops and starts: a socket, or a connection that also holds back what it read already. */
export interface Pausable {
  pause(): void;
  resume(): void;
}

/** Messages a stream may hold unread before the connection stops reading from its socket. */
export const STREAM_HIGH_WATER_MARK = 64;

/**
 * Pauses a socket while anything holds it: a stream over its high-water mark, and on the server
 * also too many calls running or too many replies unsent. The streams of one connection share
 * the socket, so a reader that falls behind slows the whole connection instead of making the
 * process buffer without limit.
 */
export class ReadThrottle {
  private readonly holders = new Set<object>();

  constructor(private readonly socket: Pausable) {}

  hold(holder: object): void {
    if (this.holders.size === 0) this.socket.pause();
    this.holders.add(holder);
  }

  release(holder: object): void {
    if (this.holders.delete(holder) && this.holders.size === 0) this.socket.resume();
  }
}

/** A single-consumer queue of received messages, ended by the peer or failed with an error. */
export class InboundQueue<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private state: 'open' | 'ended' | 'failed' | 'abandoned' = 'open';
  private failure: unknown;
  private waiter: { resolve: (result: IteratorResult<T>) => void; reject: (err: unknown) => void } | undefined;

  /** `onFull` / `onRoom` report crossing the high-water mark up and back down. */
  constructor(
    private readonly onFull: () => void,
    private readonly onRoom: () => void,
  ) {}

  push(item: T): void {
    if (this.state !== 'open') return;
    if (this.waiter) {
      this.settle({ value: item, done: false });
      return;
    }
    this.items.push(item);
    if (this.items.length === STREAM_HIGH_WATER_MARK) this.onFull();
  }

  end(): void {
    if (this.state !== 'open') return;
    this.state = 'ended';
    if (this.waiter) this.settle({ value: undefined, done: true });
  }

  /** Fails the reader once it has read what was received before the failure. */
  fail(err: unknown): void {
    if (this.state !== 'open') return;
    this.state = 'failed';
    this.failure = err;
    if (this.waiter) {
      const { reject } = this.waiter;
      this.waiter = undefined;
      reject(err);
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => this.next(),
      return: async () => {
        this.abandon();
        return { value: undefined, done: true };
      },
    };
  }

  private next(): Promise<IteratorResult<T>> {
    if (this.items.length > 0) {
      const wasFull = this.items.length === STREAM_HIGH_WATER_MARK;
      const value = this.items.shift() as T;
      if (wasFull) this.onRoom();
      return Promise.resolve({ value, done: false });
    }
    switch (this.state) {
      case 'open':
        if (this.waiter) return Promise.reject(new Error('stream is already being read'));
        return new Promise((resolve, reject) => {
          this.waiter = { resolve, reject };
        });
      case 'failed':
        return Promise.reject(this.failure);
      default:
        return Promise.resolve({ value: undefined, done: true });
    }
  }

  /** The reader stopped early: drop what is queued and whatever still arrives. */
  private abandon(): void {
    const wasFull = this.items.length >= STREAM_HIGH_WATER_MARK;
    this.items.length = 0;
    if (this.state === 'open') this.state = 'abandoned';
    if (wasFull) this.onRoom();
  }

  private settle(result: IteratorResult<T>): void {
    const { resolve } = this.waiter!;
    this.waiter = undefined;
    resolve(result);
  }
}
