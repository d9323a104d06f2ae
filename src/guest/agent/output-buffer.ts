// What a process wrote to one of its output pipes and the host has not taken yet. ReadStdio
// long-polls on it. It holds at most `limit` bytes: once full, its reader is told to stop reading
// the pipe, so a process that writes faster than the host reads blocks in write(2) (back-pressure
// all the way from the host), and it is told to go on once a read made room.
//
// Bytes are counted from the stream's start (positions). A read from a position keeps what it
// answers until a later read says it was delivered: an answer that died with its host (kuasard
// was killed before it wrote it out) is answered again to the next host, which reads from 0,
// that is from the oldest byte still kept. A read without a position forgets what it answers.
import { Code, invalidArgument, RuntimeError } from '../../base/errors.js';

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
  /** The position of data's first byte (of the end, with eof). */
  offset: number;
}

/** Where a host reads from: it has received everything before `offset`, and delivered everything before `delivered`. */
export interface ReadPosition {
  offset: number;
  delivered: number;
}

export class OutputBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  /** The position of the first byte kept. */
  private base = 0;
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
   *
   * Without `from`, the answer is the oldest bytes kept, forgotten at once. With it, what lies
   * before `from.delivered` is forgotten first, and the answer begins at `from.offset` (at the
   * oldest byte kept, when that is later) and stays kept.
   */
  async read(maxBytes: number, signal?: AbortSignal, from?: ReadPosition): Promise<OutputChunk> {
    if (from) {
      if (from.delivered > from.offset) throw invalidArgument(`delivered (${from.delivered}) is past offset (${from.offset})`);
      if (from.offset > this.writtenTo)
        throw invalidArgument(`offset ${from.offset} is past what the process wrote (${this.writtenTo} bytes)`);
      this.forget(from.delivered - this.base);
    }
    const start = (): number => Math.max(from?.offset ?? 0, this.base);
    while (start() === this.writtenTo && !this.ended) await this.changed(signal);
    const offset = start();
    if (offset === this.writtenTo) return { data: new Uint8Array(0), eof: true, offset };
    const data = this.copy(offset - this.base, maxBytes);
    if (!from) this.forget(data.length);
    return { data, eof: false, offset };
  }

  /** The position after the last byte the pipe gave. */
  private get writtenTo(): number {
    return this.base + this.size;
  }

  /** Up to `maxBytes` of what is kept, from `skip` bytes past the oldest one. */
  private copy(skip: number, maxBytes: number): Buffer {
    const parts: Buffer[] = [];
    let taken = 0;
    for (const chunk of this.chunks) {
      if (taken >= maxBytes) break;
      if (skip >= chunk.length) {
        skip -= chunk.length;
        continue;
      }
      const part = chunk.subarray(skip, skip + maxBytes - taken);
      skip = 0;
      parts.push(part);
      taken += part.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, taken);
  }

  /** Lets go of the oldest `count` bytes kept (none when count is not positive). */
  private forget(count: number): void {
    let left = Math.min(count, this.size);
    if (left <= 0) return;
    this.size -= left;
    this.base += left;
    while (left > 0) {
      const chunk = this.chunks[0]!;
      if (chunk.length <= left) {
        this.chunks.shift();
        left -= chunk.length;
      } else {
        this.chunks[0] = chunk.subarray(left);
        left = 0;
      }
    }
    if (this.paused && this.size < this.options.limit && !this.ended) {
      this.paused = false;
      this.options.resume();
    }
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
