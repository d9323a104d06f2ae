// What a process wrote to one of its output pipes and the host has not read yet. ReadStdio
// long-polls on it. It holds at most `limit` bytes: once full, its reader is told to stop reading
// the pipe, so a process that writes faster than the host reads blocks in write(2) (back-pressure
// all the way from the host), and it is told to go on once a read made room.
import { Code, RuntimeError } from '../../base/errors.js';

export interface OutputBufferOptions {
  /** Bytes held before the pipe's reader is paused. */
  limit: number;
  /** Stop reading the pipe: the buffer is full. */
  pause: () => void;
  /** Read the pipe again: a read made room. */
  resume: () => void;
}

export interface OutputChunk {
  data: Uint8Array;
  /** Everything was read and the pipe is closed: no more data will come. */
  eof: boolean;
}

export class OutputBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  private ended = false;
  private paused = false;
  private waiters = new Set<() => void>();

  constructor(private readonly options: OutputBufferOptions) {}

  get bufferedBytes(): number {
    return this.size;
  }

  /** Adds what the pipe gave. */
  push(chunk: Buffer): void {
    if (this.ended || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.size >= this.options.limit && !this.paused) {
      this.paused = true;
      this.options.pause();
    }
    this.wake();
  }

  /** The pipe is closed (or gone): readers get what is left, then eof. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.wake();
  }

  /**
   * Up to `maxBytes` of what is buffered; waits while there is nothing and the pipe is open.
   * Empty data comes only with eof. Rejects with the signal's reason once it aborts.
   */
  async read(maxBytes: number, signal?: AbortSignal): Promise<OutputChunk> {
    while (this.size === 0 && !this.ended) await this.changed(signal);
    if (this.size === 0) return { data: new Uint8Array(0), eof: true };
    return { data: this.take(maxBytes), eof: false };
  }

  private take(maxBytes: number): Buffer {
    const parts: Buffer[] = [];
    let taken = 0;
    while (taken < maxBytes && this.chunks.length > 0) {
      const chunk = this.chunks[0]!;
      const wanted = maxBytes - taken;
      if (chunk.length <= wanted) {
        parts.push(chunk);
        this.chunks.shift();
        taken += chunk.length;
      } else {
        parts.push(chunk.subarray(0, wanted));
        this.chunks[0] = chunk.subarray(wanted);
        taken += wanted;
      }
    }
    this.size -= taken;
    if (this.paused && this.size < this.options.limit && !this.ended) {
      this.paused = false;
      this.options.resume();
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, taken);
  }

  private changed(signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    return new Promise((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters.delete(wake);
        reject(abortReason(signal!));
      };
      const wake = (): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      this.waiters.add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = new Set();
    for (const wake of waiters) wake();
  }
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new RuntimeError(Code.Cancelled, 'read cancelled');
}
