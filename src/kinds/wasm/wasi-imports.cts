// The imports an instance is given: node:wasi's own, wrapped so that the daemon keeps control of
// the thread the instance shares with others (instance-worker.cts), plus the fuel check's yield.
//
// - Kill: every call into the host first looks at the instance's kill cell, and a set cell
//   unwinds the module at once (InstanceKilled). The fuel check (rewrite.ts) calls the host often
//   enough that a module in an endless loop sees it too.
// - Waiting gives the thread away: a sleep (poll_oneoff on clocks), a read of stdin, a poll of
//   stdin, and a write to a full stdout or stderr pipe (the daemon makes those non-blocking,
//   instance.ts) suspend the instance (host.block) instead of blocking the thread, as node:wasi's
//   own calls would; so does the yield when the instance's time slice is over.
// - Memory gauge: each call records the linear memory's size, for Stats.
// - stdio: descriptors 0-2 are the daemon's (FIFOs, pipes), closed by the daemon when the
//   instance ends; a module may not close or renumber them underneath it.
// - proc_exit ends the instance (ProcExit), not the thread.
// - Descriptors: each one path_open or sock_accept gives the module is noted (host.opened), so
//   that the instance's end can close what node:wasi opened for it (GuestDescriptors).
import { YIELD_IMPORT } from './suspendable-imports.cjs';

/** The unit of a WebAssembly linear memory: 64 KiB. */
export const WASM_PAGE_BYTES = 65_536;

/** Thrown into the module when the daemon kills the instance: it unwinds the module's stack. */
export class InstanceKilled extends Error {
  constructor() {
    super('killed');
  }
}

/** Thrown into the module by proc_exit: it ends the instance with `status`. */
export class ProcExit extends Error {
  constructor(readonly status: number) {
    super(`exit ${status}`);
  }
}

/** The cells of an instance's control block (an Int32Array over a SharedArrayBuffer). */
export const CONTROL = {
  /** The linear memory in 64 KiB pages, as of the module's last call into the host. */
  memoryPages: 0,
  /** 0 while the instance may run; the signal number once the daemon killed it. */
  kill: 1,
} as const;
export const CONTROL_CELLS = 2;

const ERRNO_SUCCESS = 0;
const ERRNO_AGAIN = 6;
const ERRNO_INVAL = 28;
const ERRNO_NOTSUP = 58;
const STDIN_FD = 0;
const STDIO_FDS = 3;

// WASI preview 1's poll_oneoff records (little-endian).
const SUBSCRIPTION_SIZE = 48;
const EVENT_SIZE = 32;
const EVENTTYPE_CLOCK = 0;
const EVENTTYPE_FD_READ = 1;
const EVENTRWFLAGS_HANGUP = 1;
const CLOCK_REALTIME = 0;
const SUBCLOCKFLAG_ABSTIME = 1;

type HostFunction = (...args: unknown[]) => unknown;

/** A host call that has to wait: the instance is suspended until `ready`, then the call returns `complete()`. */
export interface Blocked {
  ready: Promise<void>;
  /** The call's result once ready, or another wait (a write that still finds its pipe full). */
  complete: () => number | Blocked;
  /** Drops what the wait holds (a timer) when the instance is killed while it waits. */
  cancel?: () => void;
}

/** An instance's stdin when the daemon forwards it (instance-protocol.cts stdinForwarded). */
export interface ForwardedStdin {
  /** Bytes are buffered, or the end was reached: a read returns at once. */
  readonly readable: boolean;
  /** Moves buffered bytes into `target`; 0 at end-of-file. */
  read(target: Uint8Array): number;
  /** Settles once the stdin is readable (asks the daemon for more). */
  wait(): Promise<void>;
  readonly ended: boolean;
}

export interface InstanceHost {
  /** The instance's control block (CONTROL). */
  control: Int32Array;
  /** The module's linear memory once it is instantiated (undefined before, or if it exports none). */
  memory: () => WebAssembly.Memory | undefined;
  /** Runs a host call that may wait: a number is its result now; a Blocked suspends the instance. */
  block: (call: () => number | Blocked) => number;
  /** At a fuel check: whether the instance's time slice is over (it then yields the thread). */
  sliceOver: () => boolean;
  stdin: ForwardedStdin | undefined;
  /** Told each descriptor node:wasi opened for the module (GuestDescriptors.opened). */
  opened: (fd: number) => void;
}

/**
 * The descriptors node:wasi opened for one instance, closed when it ends: node:wasi closes none
 * of them by itself (not even once the instance is collected), and left open they would keep the
 * container's mounts busy and add up in the daemon. Its preopens come first (from 3), then each
 * path_open or sock_accept; closing every number up to the highest ever given, through node:wasi's
 * own fd_close (which closes the host's descriptor too), costs what the instance itself held. The
 * alternative, finding them among all of the daemon's descriptors by their paths, costs what every
 * instance holds, at every end.
 */
export class GuestDescriptors {
  private highest: number;

  constructor(
    /** node:wasi's own fd_close, not the wrapped one (which would refuse a killed instance). */
    private readonly close: (fd: number) => unknown,
    preopens: number,
  ) {
    this.highest = STDIO_FDS - 1 + preopens;
  }

  opened(fd: number): void {
    if (fd > this.highest) this.highest = fd;
  }

  /** Closes all of them (numbers the module closed itself are refused: EBADF, ignored). */
  closeAll(): void {
    for (let fd = STDIO_FDS; fd <= this.highest; fd++) this.close(fd);
    this.highest = STDIO_FDS - 1;
  }
}

/** `imports` (node:wasi's import object) wrapped as described above, with the fuel check's yield. */
export function controlledImports(imports: WebAssembly.Imports, host: InstanceHost): WebAssembly.Imports {
  const wrapped: WebAssembly.Imports = {};
  for (const [moduleName, functions] of Object.entries(imports)) {
    const out: Record<string, unknown> = {};
    for (const [name, fn] of Object.entries(functions)) {
      if (typeof fn !== 'function') {
        out[name] = fn;
        continue;
      }
      const call = replacement(name, fn as HostFunction, host) ?? (fn as HostFunction);
      out[name] = (...args: unknown[]) => {
        enterHost(host);
        return call(...args);
      };
    }
    wrapped[moduleName] = out;
  }
  wrapped[YIELD_IMPORT.module] = {
    [YIELD_IMPORT.name]: () => {
      enterHost(host);
      host.block(() => (host.sliceOver() ? { ready: nextTurn(), complete: () => ERRNO_SUCCESS } : ERRNO_SUCCESS));
    },
  };
  return wrapped;
}

/** Records the memory gauge, and unwinds a killed instance instead of letting it go on. */
function enterHost(host: InstanceHost): void {
  if (Atomics.load(host.control, CONTROL.kill) !== 0) throw new InstanceKilled();
  const memory = host.memory();
  if (memory) Atomics.store(host.control, CONTROL.memoryPages, memory.buffer.byteLength / WASM_PAGE_BYTES);
}

function replacement(name: string, original: HostFunction, host: InstanceHost): HostFunction | undefined {
  switch (name) {
    case 'fd_close':
      return (fd) => (Number(fd) < STDIO_FDS ? ERRNO_SUCCESS : original(fd));
    case 'fd_renumber':
      return (from, to) => (Number(from) < STDIO_FDS || Number(to) < STDIO_FDS ? ERRNO_NOTSUP : original(from, to));
    case 'fd_read':
      return (fd, iovs, count, nreadAt) =>
        Number(fd) === STDIN_FD && host.stdin
          ? host.block(() => readStdin(host, host.stdin!, iovs as number, count as number, nreadAt as number))
          : original(fd, iovs, count, nreadAt);
    case 'fd_write':
      return (fd, ...rest) =>
        Number(fd) === 1 || Number(fd) === 2 ? host.block(() => writeOutput(() => original(fd, ...rest) as number)) : original(fd, ...rest);
    case 'poll_oneoff':
      return (...args) => host.block(() => poll(host, args as number[]) ?? (original(...args) as number));
    case 'sched_yield':
      return () => host.block(() => ({ ready: nextTurn(), complete: () => ERRNO_SUCCESS }));
    case 'path_open':
      // The new descriptor's number is written at the last argument.
      return (...args) => noteOpened(host, original(...args), args[8]);
    case 'sock_accept':
      return (...args) => noteOpened(host, original(...args), args[2]);
    case 'proc_exit':
      return (status) => {
        throw new ProcExit(Number(status));
      };
    default:
      return undefined;
  }
}

/** Passes on a call's errno; on success, tells the host the descriptor it wrote at `fdAt`. */
function noteOpened(host: InstanceHost, errno: unknown, fdAt: unknown): unknown {
  const memory = host.memory();
  if (errno === ERRNO_SUCCESS && memory) host.opened(new DataView(memory.buffer).getUint32(Number(fdAt), true));
  return errno;
}

/** Settles on the event loop's next turn: what the instances ready to run wait for. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** How long a write that found its pipe full waits before it tries again (ms): a reader that drains it is not told. */
const FULL_PIPE_RETRY_MS = 5;

/** fd_write on stdout or stderr: done now, or retried later while the pipe is full (nothing written yet). */
function writeOutput(write: () => number): number | Blocked {
  const errno = write();
  if (errno !== ERRNO_AGAIN) return errno;
  return { ready: new Promise((resolve) => setTimeout(resolve, FULL_PIPE_RETRY_MS)), complete: () => writeOutput(write) };
}

/** fd_read on a forwarded stdin: fills the iovecs from what the daemon sent, or waits for more. */
function readStdin(host: InstanceHost, stdin: ForwardedStdin, iovs: number, count: number, nreadAt: number): number | Blocked {
  const complete = () => {
    const buffer = host.memory()!.buffer;
    const view = new DataView(buffer);
    let total = 0;
    for (let i = 0; i < count; i++) {
      const at = view.getUint32(iovs + i * 8, true);
      const length = view.getUint32(iovs + i * 8 + 4, true);
      const n = stdin.read(new Uint8Array(buffer, at, length));
      total += n;
      if (n < length) break;
    }
    view.setUint32(nreadAt, total, true);
    return ERRNO_SUCCESS;
  };
  return stdin.readable ? complete() : { ready: stdin.wait(), complete };
}

/**
 * poll_oneoff on clocks and the forwarded stdin: reports what is due or readable, or suspends
 * the instance until the first of them is (a kill drops it while it waits). Returns undefined
 * when a subscription waits on another descriptor: node:wasi's own poll serves those.
 */
function poll(host: InstanceHost, [inPtr, outPtr, count, countOutPtr]: number[]): number | Blocked | undefined {
  const memory = host.memory();
  if (!memory || inPtr === undefined || outPtr === undefined || count === undefined || countOutPtr === undefined) return undefined;
  if (count === 0) return ERRNO_INVAL;
  const subscriptions = readSubscriptions(new DataView(memory.buffer), inPtr, count);
  if (!subscriptions) return undefined;
  const stdinWanted = subscriptions.some((s) => s.kind === 'stdin');
  if (stdinWanted && !host.stdin) return undefined;
  const complete = () => writeEvents(host, subscriptions, outPtr, countOutPtr);
  const now = performance.now();
  const due = subscriptions.some((s) => (s.kind === 'clock' ? s.deadlineMs <= now : host.stdin!.readable));
  if (due) return complete();
  const waits: Promise<void>[] = [];
  let timer: NodeJS.Timeout | undefined;
  const deadlines = subscriptions.flatMap((s) => (s.kind === 'clock' ? [s.deadlineMs] : []));
  if (deadlines.length > 0) waits.push(new Promise((resolve) => (timer = setTimeout(resolve, Math.min(...deadlines) - now))));
  if (stdinWanted) waits.push(host.stdin!.wait());
  return { ready: Promise.race(waits).finally(() => clearTimeout(timer)), complete, cancel: () => clearTimeout(timer) };
}

function writeEvents(host: InstanceHost, subscriptions: Subscription[], outPtr: number, countOutPtr: number): number {
  const view = new DataView(host.memory()!.buffer);
  const now = performance.now();
  let written = 0;
  for (const s of subscriptions) {
    if (s.kind === 'clock' ? s.deadlineMs > now : !host.stdin!.readable) continue;
    const at = outPtr + written * EVENT_SIZE;
    for (let i = 0; i < EVENT_SIZE; i++) view.setUint8(at + i, 0);
    view.setBigUint64(at, s.userdata, true);
    view.setUint16(at + 8, ERRNO_SUCCESS, true);
    view.setUint8(at + 10, s.kind === 'clock' ? EVENTTYPE_CLOCK : EVENTTYPE_FD_READ);
    if (s.kind === 'stdin') {
      // The bytes available are not known exactly here: 1 says "at least one", or the hang-up.
      view.setBigUint64(at + 16, host.stdin!.ended ? 0n : 1n, true);
      if (host.stdin!.ended) view.setUint16(at + 24, EVENTRWFLAGS_HANGUP, true);
    }
    written += 1;
  }
  view.setUint32(countOutPtr, written, true);
  return ERRNO_SUCCESS;
}

type Subscription =
  | {
      kind: 'clock';
      userdata: bigint;
      /** When it is due, on performance.now()'s clock. */
      deadlineMs: number;
    }
  | { kind: 'stdin'; userdata: bigint };

/** The subscriptions if all are clocks or reads of stdin, else undefined. Deadlines in ms on performance.now()'s clock. */
export function readSubscriptions(
  view: DataView,
  inPtr: number,
  count: number,
  nowMs = performance.now(),
  epochMs = Date.now(),
): Subscription[] | undefined {
  const subscriptions: Subscription[] = [];
  for (let i = 0; i < count; i++) {
    const at = inPtr + i * SUBSCRIPTION_SIZE;
    const userdata = view.getBigUint64(at, true);
    const tag = view.getUint8(at + 8);
    if (tag === EVENTTYPE_FD_READ && view.getUint32(at + 16, true) === STDIN_FD) {
      subscriptions.push({ kind: 'stdin', userdata });
      continue;
    }
    if (tag !== EVENTTYPE_CLOCK) return undefined;
    const clockId = view.getUint32(at + 16, true);
    const timeoutMs = Number(view.getBigUint64(at + 24, true)) / 1e6;
    const absolute = (view.getUint16(at + 40, true) & SUBCLOCKFLAG_ABSTIME) !== 0;
    let deadlineMs = nowMs + timeoutMs;
    if (absolute) {
      // An absolute time on the wall clock, or on the monotonic clock (node:wasi's, like
      // performance.now(), counts from an arbitrary origin: hrtime's). CPU-time clocks are
      // taken as running with the wall clock while the module sleeps.
      deadlineMs = clockId === CLOCK_REALTIME ? nowMs + (timeoutMs - epochMs) : nowMs + (timeoutMs - Number(process.hrtime.bigint()) / 1e6);
    }
    subscriptions.push({ kind: 'clock', userdata, deadlineMs });
  }
  return subscriptions;
}
