// containerd's stdin (a FIFO or a stream) as the daemon copies it to where the process reads:
// a pipe, the master of its terminal, or a channel to a process elsewhere. Ending that copy is
// CloseIO's job (or the kill's, when the process is being killed): what "ending" means belongs
// to the target.
import type { Readable, Writable } from 'node:stream';

/** Where the process reads its stdin, and how its end is passed on there. */
export interface StdinTarget {
  writable: Writable;
  /**
   * Whether the end of containerd's stdin ends the process's too (a pipe), or only CloseIO does
   * (a terminal: its input has no end of its own, only the end-of-file character).
   */
  endsWithSource: boolean;
  /** Ends the process's stdin after what was written before. */
  end(): void;
  /** Ends it now, what is still in flight dropped. */
  abort(): void;
}

/** How long CloseIO waits for stdin data still in flight before it ends the copy. */
const CLOSE_GRACE_MS = 2_000;

export class StdinCopy {
  private ended = false;
  private closeGrace: NodeJS.Timeout | undefined;

  constructor(
    private readonly source: Readable,
    private readonly target: StdinTarget,
  ) {
    source.pipe(target.writable, { end: target.endsWithSource });
  }

  /** CloseIO: the process's stdin ends once what containerd sent has been passed on. */
  close(): void {
    if (this.ended || this.closeGrace) return;
    // CloseIO travels on another connection than the stdin stream and can overtake its last
    // Data: let what containerd sent arrive and drain first, for a moment at most.
    const end = () => {
      if (this.ended) return;
      this.stopCopying();
      this.target.end();
    };
    this.closeGrace = setTimeout(end, CLOSE_GRACE_MS);
    if (this.source.readableEnded) end();
    else this.source.once('end', end);
  }

  /** Ends the process's stdin now, data in flight included (the process is being killed). */
  abort(): void {
    if (!this.ended) this.stopCopying();
    this.target.abort();
  }

  private stopCopying(): void {
    this.ended = true;
    clearTimeout(this.closeGrace);
    this.source.unpipe();
    this.source.destroy();
  }
}
