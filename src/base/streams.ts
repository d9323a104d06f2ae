// Byte streams that containerd opens to a sandbox for the stdio of its processes ("streaming"
// io): one per stream, named "<container or exec id>-stdin|-stdout|-stderr", opened before the
// Task call that creates the process. The service layer offers each here as it arrives; the
// kind takes it when it sets up the process's stdio. Protocol-free: only Node streams pass.
import type { Readable, Writable } from 'node:stream';
import { alreadyExists, failedPrecondition } from './errors.js';

/** stdin arrives as a Readable; stdout and stderr leave through a Writable. */
export type ProcessStream = Readable | Writable;

export class StreamRegistry {
  private readonly offered = new Map<string, ProcessStream>();
  private readonly takers = new Map<string, (stream: ProcessStream) => void>();

  /** A stream containerd opened. One offered again under the same id replaces the old one. */
  offer(id: string, stream: ProcessStream): void {
    const taker = this.takers.get(id);
    if (taker) {
      this.takers.delete(id);
      taker(stream);
      return;
    }
    this.offered.get(id)?.destroy();
    this.offered.set(id, stream);
    // containerd gave up on it (or the connection dropped) before anyone took it.
    stream.once('close', () => {
      if (this.offered.get(id) === stream) this.offered.delete(id);
    });
  }

  /** The stream named `id`, once it has been offered; FailedPrecondition after `timeoutMs`. */
  take(id: string, timeoutMs: number): Promise<ProcessStream> {
    const stream = this.offered.get(id);
    if (stream) {
      this.offered.delete(id);
      return Promise.resolve(stream);
    }
    if (this.takers.has(id)) return Promise.reject(alreadyExists(`a process waiting for stream ${id}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.takers.delete(id);
        reject(failedPrecondition(`stream ${id} was not opened by containerd within ${timeoutMs} ms`));
      }, timeoutMs);
      this.takers.set(id, (taken) => {
        clearTimeout(timer);
        resolve(taken);
      });
    });
  }

  /** How many offered streams wait to be taken. */
  get pending(): number {
    return this.offered.size;
  }

  /** Destroys every stream nobody took (the sandbox goes away). */
  close(): void {
    for (const stream of this.offered.values()) stream.destroy();
    this.offered.clear();
  }
}
