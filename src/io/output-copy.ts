// One output of a process as the daemon copies it: from what the daemon reads (a pipe the
// process writes, or the master of its terminal) to where containerd wants it (a FIFO, or a
// stream of the Streaming API), and the rule for ending that copy once the process has exited.
//
// containerd (CRI above all) takes a process's output to be complete once its exit is known, so
// the exit is reported only after `deliver`: the source has been read to its end and the sink
// has taken all of it. Two things can keep a source from ending: containerd taking the output
// slowly (its stream grants credits at its own pace; the copy then waits, it is not idle), and
// children of the process that inherited its stdout or terminal and outlive it (`cmd &`, a
// daemon). Only the second is cut short: a source that stays open with nothing to read for
// `readGraceMs` is given up. runc's shim gives up on a terminal as soon as a read after the exit
// finds nothing; the grace period here lets such children's last words through too.
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';

export interface OutputLimits {
  /** How long an output that others still hold open may stay idle before reading it stops. */
  readGraceMs: number;
  /**
   * How long everything may take in all, reading and delivering: a reader on containerd's side
   * that stopped taking output must not hold the exit back for ever. runc's shim waits as long
   * for its copies when a process is deleted.
   */
  deliverMs: number;
}

export const DEFAULT_OUTPUT_LIMITS: OutputLimits = { readGraceMs: 2_000, deliverMs: 10_000 };

export class OutputCopy {
  /** Chunks read so far, to tell an idle source from one that still delivers. */
  private chunksRead = 0;

  /** Starts copying `source` into `sink` (or discarding it, with no sink). */
  constructor(
    private readonly source: Readable,
    private readonly sink: Writable | undefined,
  ) {
    if (sink) {
      source.pipe(sink);
      // pipe() ends the sink on end-of-file only; a source that fails (a terminal reading EIO
      // once its other side is gone) has ended just as well.
      source.once('close', () => {
        if (!sink.writableEnded) sink.end();
      });
    } else {
      source.resume();
    }
    source.on('data', () => this.chunksRead++);
  }

  /**
   * Resolves once the source has been read to its end (or given up, see above) and the sink has
   * taken all that was read, or failed. Call it once the process has exited.
   */
  async deliver(readGraceMs: number): Promise<void> {
    const ended = settled(this.source, { writable: false });
    for (;;) {
      const seen = this.chunksRead;
      if (await within(readGraceMs, ended)) break;
      const idle = this.chunksRead === seen && !this.sink?.writableNeedDrain;
      if (idle) {
        this.stopReading();
        break;
      }
    }
    await settled(this.sink ?? this.source);
  }

  /** Ends the copy while the source is still open: what was read but not passed on goes first. */
  private stopReading(): void {
    const { source, sink } = this;
    if (source.readableEnded || source.destroyed) return;
    source.unpipe();
    for (;;) {
      const chunk: unknown = source.read();
      if (chunk === null) break;
      sink?.write(chunk);
    }
    source.destroy();
    if (sink && !sink.writableEnded) sink.end();
  }
}

/** Waits for `work`, for at most `ms`; true if it settled in time. */
export async function within(ms: number, work: Promise<unknown>): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([work.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Settles when the stream is done (its reading side only, with `writable: false`), finished or failed. */
function settled(stream: Readable | Writable, options: { writable?: false } = {}): Promise<void> {
  return finished(stream, options).catch(() => undefined);
}
