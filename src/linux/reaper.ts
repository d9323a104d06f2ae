// Collects the exit status of container processes that this daemon does not spawn itself.
//
// `runc create` forks the container's init and exits; the init is then an orphan. As a child
// subreaper, this process becomes its parent instead of PID 1, so it can waitpid() for it and
// learn how it ended. Node's child_process (libuv) reaps its own children by pid, never with
// waitpid(-1); the Reaper must do the same, or it would steal their statuses. So it only waits
// for the pids it was asked to watch, through linux/child-waits.ts (which linux/spawn.ts uses
// for its children too).
//
// Foreign processes: after a daemon restart the containers' processes are no longer our children
// (they were re-parented to the nearest subreaper above us, or PID 1), and waitpid() fails with
// ECHILD. Their exit status is then lost for good: `watch` rejects with that ECHILD ErrnoError,
// and the caller should switch to `watchForeign`, which only learns *when* the process ends
// (through a pidfd, so a reused pid cannot fool it) and reports UNKNOWN_EXIT_STATUS. Before
// trusting a pid read back from a state file, the caller must check that it still names the
// same process (e.g. by its start time in /proc/<pid>/stat, as runc does).
//
// Limitation: an orphan that nobody watches (say, a daemon a container hook double-forked)
// stays a zombie under us until the daemon exits, because reaping unknown pids would race libuv.

import { exitedNow, UNKNOWN_EXIT_STATUS, type ExitInfo } from '../base/model.js';
import { hasErrnoCode } from './libc/binding.js';
import { closeFd } from './libc/files.js';
import { ownChildren, readProcStat, type ProcStat } from './proc.js';
import { isWaitedFor, stopWaiting, waitForChild } from './child-waits.js';
import { pidfdHasExited, pidfdOpen, setChildSubreaper, waitpid, WNOHANG, type WaitStatus } from './libc/processes.js';

export interface ReaperOptions {
  /**
   * While a foreign process is watched or an orphan awaits its sweep, a timer looks again at
   * this interval: the only way to notice foreign exits, and it keeps the event loop alive while
   * they are awaited. (Children are waited for by child-waits.ts, on SIGCHLD.) Default 1000.
   */
  pollIntervalMs?: number;
}

interface Pending {
  promise: Promise<ExitInfo>;
  resolve: (exit: ExitInfo) => void;
  reject: (err: Error) => void;
}

interface ForeignPending extends Pending {
  pidfd: number;
}

/** The exit a wait status tells, observed now (reaping follows the exit within one event-loop turn). */
function exitOf(status: WaitStatus): ExitInfo {
  return exitedNow(status.signal !== undefined ? 128 + status.signal : (status.exitCode ?? UNKNOWN_EXIT_STATUS));
}

function pending<T extends Pending>(extra: Omit<T, keyof Pending>): T {
  let resolve!: (exit: ExitInfo) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<ExitInfo>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { ...extra, promise, resolve, reject } as T;
}

/** How long a zombie picked by reapOrphans is left for a watch to claim. */
const ORPHAN_GRACE_MS = 1000;

export class Reaper {
  /** The exits of the children watched, until they settle. */
  private readonly children = new Map<number, Promise<ExitInfo>>();
  /** What marks the orphans that are reaped unwatched (reapOrphans). */
  private readonly orphanMatchers: ((stat: ProcStat) => boolean)[] = [];
  /** Zombies picked by reapOrphans that no watch has claimed yet, with when a sweep first saw them. */
  private unclaimedOrphans = new Map<number, number>();
  private readonly foreign = new Map<number, ForeignPending>();
  private readonly pollIntervalMs: number;
  private readonly onSigchld = (): void => this.sweepOrphans();
  private timer: NodeJS.Timeout | undefined;
  private started = false;

  constructor(options: ReaperOptions = {}) {
    this.pollIntervalMs = options.pollIntervalMs ?? 1000;
  }

  /**
   * Makes this process a child subreaper and starts listening for SIGCHLD. Call it before
   * starting any container: an orphan re-parented before this goes to PID 1 instead.
   */
  start(): this {
    if (this.started) return this;
    setChildSubreaper();
    process.on('SIGCHLD', this.onSigchld);
    this.started = true;
    return this;
  }

  /** Stops listening. Pending watches reject; the processes are neither killed nor reaped. */
  stop(): void {
    if (!this.started) return;
    process.off('SIGCHLD', this.onSigchld);
    this.started = false;
    const stopped = new Error('reaper stopped');
    for (const pid of [...this.children.keys()]) stopWaiting(pid, stopped);
    for (const [pid, watch] of this.foreign) {
      this.forgetForeign(pid, watch);
      watch.reject(stopped);
    }
    this.updateTimer();
  }

  /** How many processes are being watched. */
  get size(): number {
    return this.children.size + this.foreign.size;
  }

  /**
   * Resolves with the exit of `pid`, a child of this process (directly, or re-parented to us as
   * subreaper). Tries at once, since the process may be a zombie already. Watching the same pid
   * twice returns the same promise. Rejects with ErrnoError ECHILD when `pid` is not our child.
   */
  watch(pid: number): Promise<ExitInfo> {
    this.assertStarted();
    const existing = this.children.get(pid);
    if (existing) return existing;
    const forget = () => void this.children.delete(pid);
    const exit = waitForChild(pid).then(exitOf);
    exit.then(forget, forget);
    this.children.set(pid, exit);
    return exit;
  }

  /**
   * Resolves when `pid`, a process that is not our child, exits; the status is unknowable, so it
   * reports UNKNOWN_EXIT_STATUS. Resolves at once when the pid is gone.
   * Do not use it for our own children: they would stay zombies (use `watch`).
   */
  watchForeign(pid: number): Promise<ExitInfo> {
    this.assertStarted();
    const existing = this.foreign.get(pid);
    if (existing) return existing.promise;
    let pidfd: number;
    try {
      pidfd = pidfdOpen(pid);
    } catch (err) {
      if (hasErrnoCode(err, 'ESRCH')) return Promise.resolve(exitedNow(UNKNOWN_EXIT_STATUS));
      return Promise.reject(err);
    }
    const watch = pending<ForeignPending>({ pidfd });
    this.foreign.set(pid, watch);
    this.pollForeign(pid, watch);
    this.updateTimer();
    return watch.promise;
  }

  private assertStarted(): void {
    if (!this.started) throw new Error('reaper not started: call start() before watching processes');
  }

  /**
   * Reaps the orphans re-parented to this process that `match` picks and that nobody watches:
   * helpers a runtime leaves behind without telling their pids (runsc's gofers and stubs). Never
   * for a process this one spawned itself: libuv and linux/spawn.ts reap those by pid and must
   * stay the only ones to. A zombie is left alone for ORPHAN_GRACE_MS after a sweep first sees it, so that a caller
   * about to watch a pid it has just learned (an exec's, from a pid file) gets there first.
   */
  reapOrphans(match: (stat: ProcStat) => boolean): void {
    this.orphanMatchers.push(match);
  }

  private sweepOrphans(): void {
    if (this.orphanMatchers.length > 0) this.reapMatchedOrphans();
    this.updateTimer();
  }

  private reapMatchedOrphans(): void {
    const now = Date.now();
    const unclaimed = new Map<number, number>();
    for (const pid of ownChildren()) {
      if (isWaitedFor(pid)) continue;
      const stat = readProcStat(pid);
      if (stat?.state !== 'Z' || !this.orphanMatchers.some((match) => match(stat))) continue;
      const seen = this.unclaimedOrphans.get(pid) ?? now;
      if (now - seen < ORPHAN_GRACE_MS) {
        unclaimed.set(pid, seen);
        continue;
      }
      try {
        waitpid(pid, WNOHANG);
      } catch {
        // Reaped meanwhile: nothing left to do.
      }
    }
    this.unclaimedOrphans = unclaimed;
  }

  private pollForeign(pid: number, watch: ForeignPending): void {
    let exited: boolean;
    try {
      exited = pidfdHasExited(watch.pidfd);
    } catch (err) {
      this.forgetForeign(pid, watch);
      watch.reject(err as Error);
      return;
    }
    if (!exited) return;
    this.forgetForeign(pid, watch);
    watch.resolve(exitedNow(UNKNOWN_EXIT_STATUS));
  }

  private forgetForeign(pid: number, watch: ForeignPending): void {
    this.foreign.delete(pid);
    closeFd(watch.pidfd);
  }

  private updateTimer(): void {
    // Foreign exits are only seen by polling, unclaimed orphans need the next sweep; children's
    // exits come through child-waits.ts, which keeps its own timer.
    const busy = this.foreign.size > 0 || this.unclaimedOrphans.size > 0;
    if (!busy && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    } else if (busy && !this.timer) {
      this.timer = setInterval(() => {
        for (const [pid, watch] of this.foreign) this.pollForeign(pid, watch);
        this.sweepOrphans();
      }, this.pollIntervalMs);
    }
  }
}
