// systemd's service notifications (sd_notify(3)) for a daemon run by a `Type=notify` unit: READY=1
// once it serves, WATCHDOG=1 while its event loop runs (the unit's WatchdogSec: systemd restarts
// a daemon that stops sending them), STOPPING=1 when it shuts down. systemd passes the
// notification socket's address in NOTIFY_SOCKET ('@' for an abstract one) and the watchdog's
// period in WATCHDOG_USEC; the messages are unix datagrams, which Node's net module cannot send,
// so they go through libc (libc/sockets.ts).
import { sendDatagram } from './libc/sockets.js';

export interface NotifierEnvironment {
  NOTIFY_SOCKET?: string | undefined;
  WATCHDOG_USEC?: string | undefined;
  WATCHDOG_PID?: string | undefined;
}

export class SystemdNotifier {
  /** How often WATCHDOG=1 is sent (half of WATCHDOG_USEC); undefined without a watchdog. */
  readonly watchdogIntervalMs: number | undefined;
  private watchdog: NodeJS.Timeout | undefined;

  constructor(
    readonly socket: string,
    watchdogUsec?: number,
  ) {
    this.watchdogIntervalMs = watchdogUsec === undefined ? undefined : Math.max(1, Math.floor(watchdogUsec / 2000));
  }

  /**
   * The notifier systemd asks for through `env`, or undefined when it asks for none (not run by
   * systemd, or by a unit of another type). The variables are removed from `env`, as
   * sd_notify's unset_environment does: the processes kuasard starts (runtimes, QEMU, the fd
   * keeper) are not the unit's main process, and must not talk to systemd in its name.
   * Throws for an address this module cannot send to (systemd's vsock addresses).
   */
  static fromEnvironment(env: NotifierEnvironment, pid: number): SystemdNotifier | undefined {
    const socket = env.NOTIFY_SOCKET;
    const usec = env.WATCHDOG_USEC;
    const watchdogPid = env.WATCHDOG_PID;
    delete env.NOTIFY_SOCKET;
    delete env.WATCHDOG_USEC;
    delete env.WATCHDOG_PID;
    if (!socket) return undefined;
    if (!socket.startsWith('/') && !socket.startsWith('@')) {
      throw new Error(`NOTIFY_SOCKET=${socket} is neither a unix socket path nor an abstract name ('@...'): not notifying systemd`);
    }
    // WATCHDOG_PID names the process the watchdog is for: a variable inherited from a parent
    // under a watchdog of its own is not ours.
    const forUs = watchdogPid === undefined || Number(watchdogPid) === pid;
    const watchdogUsec = usec !== undefined && /^[1-9][0-9]*$/.test(usec) && forUs ? Number(usec) : undefined;
    return new SystemdNotifier(socket, watchdogUsec);
  }

  /** Sends one notification: `KEY=value` lines. Throws an ErrnoError when it cannot be sent. */
  notify(fields: Readonly<Record<string, string>>): void {
    const message = Object.entries(fields)
      .map(([key, value]) => `${key}=${value.replaceAll('\n', ' ')}`)
      .join('\n');
    sendDatagram(this.socket, Buffer.from(message, 'utf8'));
  }

  /** The daemon serves: `Type=notify` units count as started from here on. */
  ready(status: string): void {
    this.notify({ READY: '1', STATUS: status });
  }

  /** The daemon shuts down; the watchdog stops with it. */
  stopping(status: string): void {
    this.stopWatchdog();
    this.notify({ STOPPING: '1', STATUS: status });
  }

  /**
   * Sends WATCHDOG=1 every watchdogIntervalMs from the event loop, so that systemd restarts a
   * daemon whose loop is stuck; a failed send goes to `onError` (a lost ping is no reason to
   * stop). Nothing without a watchdog. The timer keeps no process alive.
   */
  startWatchdog(onError: (err: unknown) => void): void {
    if (this.watchdogIntervalMs === undefined || this.watchdog) return;
    this.watchdog = setInterval(() => {
      try {
        this.notify({ WATCHDOG: '1' });
      } catch (err) {
        onError(err);
      }
    }, this.watchdogIntervalMs).unref();
  }

  stopWatchdog(): void {
    clearInterval(this.watchdog);
    this.watchdog = undefined;
  }
}
