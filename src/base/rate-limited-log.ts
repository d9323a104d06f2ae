// Warnings a peer can trigger at will (a bad frame, a bad request) are logged a few times per
// interval for each message, not once per occurrence: a client sending two million bad frames
// must cost a few log lines, not tens of megabytes. What was left out is counted and told.

/** The part of a structured logger (pino's shape) this needs. */
export interface WarnLogger {
  warn(fields: Record<string, unknown>, message: string): void;
}

export interface RateLimitOptions {
  /** Lines logged per message in one interval. */
  burst: number;
  intervalMs: number;
}

const DEFAULT_LIMIT: RateLimitOptions = { burst: 10, intervalMs: 10_000 };

interface Window {
  start: number;
  logged: number;
  suppressed: number;
  report: NodeJS.Timeout | undefined;
}

export class RateLimitedLog implements WarnLogger {
  /** One window per message; messages are fixed strings, so the map stays small. */
  private readonly windows = new Map<string, Window>();

  constructor(
    private readonly logger: WarnLogger,
    private readonly limit: RateLimitOptions = DEFAULT_LIMIT,
  ) {}

  warn(fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    let window = this.windows.get(message);
    if (window === undefined || now - window.start >= this.limit.intervalMs) {
      window = { start: now, logged: 0, suppressed: 0, report: undefined };
      this.windows.set(message, window);
    }
    if (window.logged < this.limit.burst) {
      window.logged++;
      this.logger.warn(fields, message);
      return;
    }
    window.suppressed++;
    // Told once the window closes, so the count is known even if nothing else ever comes.
    const current = window;
    current.report ??= setTimeout(() => this.report(message, current), current.start + this.limit.intervalMs - now);
    // A summary still to be written must not keep the process alive.
    current.report.unref();
  }

  private report(message: string, window: Window): void {
    this.logger.warn({ suppressed: window.suppressed }, `${message} (${window.suppressed} more like it suppressed)`);
  }
}
