// A burst of work (pods started or removed, containers run) leaves kuasard bigger than before,
// and neither of its allocators gives much back on its own: V8 keeps its grown heap pages for the
// next burst until its memory reducer runs (tens of seconds later), and glibc keeps what the
// threads freed in their arenas for good. Once the calls have stopped for a quiet time, if the
// process grew since the last release, this collects the garbage and hands the allocator's free
// memory back. A quiet moment costs a couple of full collections (about 10 ms each for kuasard's
// heap), never one per call: a call only pushes the timer back.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { releaseFreeMemory } from '../linux/libc/processes.js';
import type { CallObserver } from '../services/call-log.js';

export interface IdleMemoryOptions {
  /** How long the calls must have stopped before memory is released (ms). */
  quietMs: number;
  /** Growth of the resident set since the last release below which a release is not worth it. */
  growthBytes: number;
  /** Full collections per release, and the pause after each (ms). */
  collections: number;
  collectionGapMs: number;
  /** The process's resident set (bytes). */
  residentBytes: () => number;
  /** A full garbage collection; absent when node was started without --expose-gc. */
  collectGarbage: (() => void) | undefined;
  /** Hands the C allocator's free memory back. */
  releaseFreeMemory: () => void;
}

const DEFAULTS: IdleMemoryOptions = {
  quietMs: 2_000,
  growthBytes: 1024 * 1024,
  // V8 hands the pages a collection emptied back to the system from its own threads, a moment
  // later, and a second collection finds what the first one's finalizers let go.
  collections: 2,
  collectionGapMs: 1_000,
  residentBytes: () => process.memoryUsage.rss(),
  // Exposed by node's --expose-gc (KUASARD_NODE_FLAGS).
  collectGarbage: (globalThis as { gc?: () => void }).gc,
  releaseFreeMemory,
};

export class IdleMemoryRelease {
  private readonly options: IdleMemoryOptions;
  private timer: NodeJS.Timeout | undefined;
  private residentAfterRelease: number;
  private releasing: Promise<void> | undefined;

  constructor(
    private readonly log: Logger,
    options: Partial<IdleMemoryOptions> = {},
  ) {
    this.options = { ...DEFAULTS, ...options };
    this.residentAfterRelease = this.options.residentBytes();
  }

  /** A CallObserver that notes each call as work done and then tells `inner`. */
  observer(inner?: CallObserver): CallObserver {
    return (method, code, seconds) => {
      this.noteWork();
      inner?.(method, code, seconds);
    };
  }

  /** Work was done (a call ended, the daemon started): memory is released once none follows for the quiet time. */
  noteWork(): void {
    if (this.timer) this.timer.refresh();
    else this.timer = setTimeout(() => this.releaseIfGrown(), this.options.quietMs).unref();
  }

  /** The release under way, if any (for tests). */
  get settled(): Promise<void> {
    return this.releasing ?? Promise.resolve();
  }

  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private releaseIfGrown(): void {
    this.timer = undefined;
    const before = this.options.residentBytes();
    if (this.releasing || before - this.residentAfterRelease < this.options.growthBytes) return;
    this.releasing = this.release(before).finally(() => {
      this.releasing = undefined;
    });
  }

  private async release(before: number): Promise<void> {
    const { collectGarbage } = this.options;
    for (let i = 0; i < this.options.collections && collectGarbage; i++) {
      collectGarbage();
      await sleep(this.options.collectionGapMs, undefined, { ref: false });
    }
    this.options.releaseFreeMemory();
    this.residentAfterRelease = this.options.residentBytes();
    this.log.debug({ residentBefore: before, residentAfter: this.residentAfterRelease }, 'memory released after a burst of work');
  }
}
