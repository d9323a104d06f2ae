// Waiting for this process's own children to exit, by pid, for every part of the daemon that has
// children child_process did not start: the OCI runtime's commands (linux/spawn.ts) and the
// containers' processes re-parented to the daemon as subreaper (linux/reaper.ts).
//
// One SIGCHLD listener tries every pid waited for, since SIGCHLDs coalesce (one signal for many
// exits), each with waitpid(pid, WNOHANG): never waitpid(-1), which would steal the statuses of
// libuv's own children. While any pid is waited for, a timer tries again every second: a safety
// net for a missed signal, and what keeps the event loop alive while an exit is awaited, as a
// running child_process does (signal listeners never do).

import { waitpid, WNOHANG, type WaitStatus } from './libc/processes.js';

const SAFETY_POLL_MS = 1000;

interface Wait {
  promise: Promise<WaitStatus>;
  resolve: (status: WaitStatus) => void;
  reject: (err: Error) => void;
}

const waits = new Map<number, Wait>();
let safetyTimer: NodeJS.Timeout | undefined;
let listening = false;

/**
 * Resolves with the wait status of `pid`, a child of this process, once it has exited and is
 * reaped. Tries at once (it may be a zombie already); waiting for a pid twice gives the same
 * promise. Rejects with waitpid's ErrnoError (ECHILD: not a child of this process).
 */
export function waitForChild(pid: number): Promise<WaitStatus> {
  // Listening from the first wait on: a SIGCHLD that comes with no listener is lost.
  if (!listening) {
    process.on('SIGCHLD', tryAll);
    listening = true;
  }
  const existing = waits.get(pid);
  if (existing) return existing.promise;
  let resolve!: Wait['resolve'];
  let reject!: Wait['reject'];
  const promise = new Promise<WaitStatus>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  const wait = { promise, resolve, reject };
  waits.set(pid, wait);
  tryOne(pid, wait);
  updateTimer();
  return promise;
}

/** Whether an exit of `pid` is waited for here: nobody else may reap it. */
export function isWaitedFor(pid: number): boolean {
  return waits.has(pid);
}

/** Stops waiting for `pid`: its promise rejects with `reason`; the process is neither killed nor reaped. */
export function stopWaiting(pid: number, reason: Error): void {
  const wait = waits.get(pid);
  if (!wait) return;
  waits.delete(pid);
  wait.reject(reason);
  updateTimer();
}

function tryAll(): void {
  for (const [pid, wait] of waits) tryOne(pid, wait);
  updateTimer();
}

function tryOne(pid: number, wait: Wait): void {
  let reaped: ReturnType<typeof waitpid>;
  try {
    reaped = waitpid(pid, WNOHANG);
  } catch (err) {
    waits.delete(pid);
    wait.reject(err as Error);
    return;
  }
  if (!reaped) return;
  waits.delete(pid);
  wait.resolve(reaped.status);
}

function updateTimer(): void {
  if (waits.size === 0 && safetyTimer) {
    clearInterval(safetyTimer);
    safetyTimer = undefined;
  } else if (waits.size > 0 && !safetyTimer) {
    safetyTimer = setInterval(tryAll, SAFETY_POLL_MS);
  }
}
