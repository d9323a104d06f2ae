// A forwarded stdin on the worker's side (wasi-imports.cts ForwardedStdin): the chunks the daemon
// sent, read by fd_read. The daemon reads the instance's stdin pipe one chunk at a time, when the
// instance asks (instance.ts), so a module that does not read holds nothing here.
import type { ForwardedStdin } from './wasi-imports.cjs';

export class StdinBuffer implements ForwardedStdin {
  private readonly chunks: Uint8Array[] = [];
  /** How far the first chunk has been read. */
  private offset = 0;
  private endReached = false;
  private asked = false;
  private readonly waiters: (() => void)[] = [];

  /** @param ask asks the daemon for the next chunk (it answers with receive()). */
  constructor(private readonly ask: () => void) {}

  get readable(): boolean {
    return this.chunks.length > 0 || this.endReached;
  }

  get ended(): boolean {
    return this.endReached && this.chunks.length === 0;
  }

  read(target: Uint8Array): number {
    let n = 0;
    while (n < target.length && this.chunks.length > 0) {
      const chunk = this.chunks[0]!;
      const take = Math.min(chunk.length - this.offset, target.length - n);
      target.set(chunk.subarray(this.offset, this.offset + take), n);
      n += take;
      this.offset += take;
      if (this.offset === chunk.length) {
        this.chunks.shift();
        this.offset = 0;
      }
    }
    return n;
  }

  wait(): Promise<void> {
    if (this.readable) return Promise.resolve();
    if (!this.asked) {
      this.asked = true;
      this.ask();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** The daemon's answer: a chunk, or null at end-of-file. */
  receive(chunk: Uint8Array | null): void {
    this.asked = false;
    if (chunk === null) this.endReached = true;
    else if (chunk.length > 0) this.chunks.push(chunk);
    for (const resolve of this.waiters.splice(0)) resolve();
  }
}
