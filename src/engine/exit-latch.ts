// A one-shot signal with many listeners: every waiter of a process (Task Wait, the sandbox's
// stop, Controller Wait) gets the same exit.
import type { ExitInfo } from '../base/model.js';

export class ExitLatch {
  private resolveExit!: (exit: ExitInfo) => void;
  readonly promise: Promise<ExitInfo> = new Promise((resolve) => (this.resolveExit = resolve));

  /** A latch already settled with `exit`, or an open one. */
  static of(exit: ExitInfo | null): ExitLatch {
    const latch = new ExitLatch();
    if (exit) latch.settle(exit);
    return latch;
  }

  /** Settles the latch; later calls change nothing. */
  settle(exit: ExitInfo): void {
    this.resolveExit(exit);
  }
}

/**
 * Resolves on the event loop's next turn. A call that has just finished has its answer written
 * to its socket in the same turn (promise callbacks only), so whatever is reported after this
 * reaches containerd after that answer.
 */
export const answersSent = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));

export const delay = (ms: number): Promise<void> => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
