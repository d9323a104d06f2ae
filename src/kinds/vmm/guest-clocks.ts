// Keeps the wall clocks of the kind's guests on the host's. A guest's clock is set once when its
// VM has booted; after that it drifts (an emulated timer under TCG) and, worse, stands still
// while the host is suspended: on resume the host's wall clock has jumped ahead and every guest
// lags by the time the host slept, which breaks TLS certificates, token expiry and log times.
//
// One timer for the whole kind, running only while some VM is registered. Each tick compares the
// host's wall clock with its monotonic clock: monotonic time does not advance while the host
// sleeps and is never set, so a change in their difference means the wall clock jumped (a
// resume, or an administrator or NTP stepping it). A jump syncs every guest at once; otherwise
// each guest is synced every `intervalMs`, which bounds the drift.
import type { Logger } from 'pino';

/** A wall-clock reading against a monotonic one, both in milliseconds. */
export interface ClockReading {
  wallMs: number;
  monotonicMs: number;
}

/** How far the wall clock may move against the monotonic one between two ticks before it counts as a jump. */
export const JUMP_THRESHOLD_MS = 1_000;

/** True when the wall clock moved by more than the threshold relative to the monotonic clock between the readings. */
export function wallClockJumped(previous: ClockReading, now: ClockReading, thresholdMs = JUMP_THRESHOLD_MS): boolean {
  const offsetBefore = previous.wallMs - previous.monotonicMs;
  const offsetNow = now.wallMs - now.monotonicMs;
  return Math.abs(offsetNow - offsetBefore) > thresholdMs;
}

const readClocks = (): ClockReading => ({ wallMs: Date.now(), monotonicMs: performance.now() });

/** Sets one guest's clock to the host's; the sandbox that owns the VM supplies it. */
export type SyncGuestClock = () => Promise<void>;

export interface GuestClocksOptions {
  /** Every guest is synced at least this often; 0: only when the host's clock jumps. */
  intervalMs: number;
  /** How often the host's clocks are compared. */
  tickMs: number;
  log: Logger;
}

export class GuestClocks {
  private readonly guests = new Map<string, { sync: SyncGuestClock; syncedAt: number }>();
  private timer: NodeJS.Timeout | null = null;
  private last: ClockReading = readClocks();

  constructor(private readonly options: GuestClocksOptions) {}

  /** Syncs the guest now and keeps it synced until `forget`. */
  async keep(sandboxId: string, sync: SyncGuestClock): Promise<void> {
    await sync();
    this.guests.set(sandboxId, { sync, syncedAt: performance.now() });
    if (!this.timer) {
      this.last = readClocks();
      this.timer = setInterval(() => this.tick(), this.options.tickMs);
      // A pending sync never keeps the daemon alive.
      this.timer.unref();
    }
  }

  forget(sandboxId: string): void {
    this.guests.delete(sandboxId);
    if (this.guests.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  private tick(): void {
    const now = readClocks();
    const jumped = wallClockJumped(this.last, now);
    if (jumped)
      this.options.log.info(
        { byMs: Math.round(now.wallMs - now.monotonicMs - (this.last.wallMs - this.last.monotonicMs)) },
        "the host's clock jumped: syncing every guest",
      );
    this.last = now;
    const { intervalMs } = this.options;
    for (const [sandboxId, guest] of this.guests) {
      const due = intervalMs > 0 && now.monotonicMs - guest.syncedAt >= intervalMs;
      if (!jumped && !due) continue;
      guest.syncedAt = now.monotonicMs;
      // A VM that is going away fails the call: its sandbox forgets it as it ends.
      guest
        .sync()
        .catch((err: unknown) => this.options.log.warn({ sandboxId, err: (err as Error).message }, "could not sync a guest's clock"));
    }
  }
}
