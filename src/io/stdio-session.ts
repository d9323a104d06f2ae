// What a process's stdio does the same way wherever the process runs (on this host:
// process-stdio.ts; elsewhere, over a byte channel: forwarded-stdio.ts): CloseIO, abort on a
// kill, delivery of everything written once the process has exited, and release.
import type { StdioCopies } from './copies.js';
import type { StdioEndpoints } from './endpoints.js';
import { DEFAULT_OUTPUT_LIMITS, type OutputLimits } from './output-copy.js';

export abstract class StdioSession {
  protected closed = false;

  protected constructor(
    protected readonly endpoints: StdioEndpoints,
    protected readonly copies: StdioCopies,
  ) {}

  /**
   * Ends the process's stdin where the daemon holds it: through a pipe or a channel, the process
   * reads end-of-file; on a terminal, which has no end of its own, it gets the end-of-file
   * character. A process that reads a FIFO itself sees end-of-file when containerd closes its writer.
   */
  closeStdin(): void {
    this.copies.closeStdin();
  }

  /** Ends the process's stdin now, data in flight included (the process is being killed). */
  abortStdin(): void {
    this.copies.abortStdin();
  }

  /**
   * The process has exited: delivers everything it wrote (see OutputCopy.deliver), for at most
   * `limits.deliverMs`, then releases everything.
   */
  async finish(limits: OutputLimits = DEFAULT_OUTPUT_LIMITS): Promise<void> {
    await this.copies.deliver(limits);
    this.close();
  }

  /** Releases everything now. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.releaseOwn();
    this.copies.close();
    this.endpoints.close();
  }

  /** Releases what this kind of session holds besides the copies and the endpoints. */
  protected abstract releaseOwn(): void;
}
