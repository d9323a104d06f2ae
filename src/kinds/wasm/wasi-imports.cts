// The WASI imports an instance is given: node:wasi's own, wrapped so that the daemon keeps
// control of the thread the module runs on.
//
// - Kill: every call into the host first looks at the instance's kill cell, and a set cell
//   unwinds the module at once (InstanceKilled). A module that sleeps waits on that same cell,
//   so Kill wakes it: node:wasi's own poll_oneoff blocks in native code, where neither Kill nor
//   Worker.terminate() can reach it for as long as the module asked to sleep.
// - Memory gauge: each call records the linear memory's size, for Stats.
// - stdio: descriptors 0-2 are the daemon's (FIFOs, pipes), closed by the daemon when the
//   instance ends; a module may not close or renumber them underneath it.

/** The unit of a WebAssembly linear memory: 64 KiB. */
export const WASM_PAGE_BYTES = 65_536;

/** Thrown into the module when the daemon kills the instance: it unwinds the module's stack. */
export class InstanceKilled extends Error {
  constructor() {
    super('killed');
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
const ERRNO_INVAL = 28;
const ERRNO_NOTSUP = 58;
const STDIO_FDS = 3;

// WASI preview 1's poll_oneoff records (little-endian).
const SUBSCRIPTION_SIZE = 48;
const EVENT_SIZE = 32;
const EVENTTYPE_CLOCK = 0;
const CLOCK_REALTIME = 0;
const SUBCLOCKFLAG_ABSTIME = 1;

type HostFunction = (...args: unknown[]) => unknown;

export interface InstanceHost {
  /** The instance's control block (CONTROL). */
  control: Int32Array;
  /** The module's linear memory once it is instantiated (undefined before, or if it exports none). */
  memory: () => WebAssembly.Memory | undefined;
}

/** `imports` (node:wasi's import object) with every function wrapped as described above. */
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
    case 'poll_oneoff':
      return (...args) => pollClocks(host, args as number[]) ?? original(...args);
    default:
      return undefined;
  }
}

/**
 * poll_oneoff for a module that only sleeps (every subscription a clock): waits on the kill
 * cell until the earliest deadline, then reports the clocks that are due. Returns undefined
 * when a subscription waits on a descriptor: node:wasi's own poll serves those.
 */
function pollClocks(host: InstanceHost, [inPtr, outPtr, count, countOutPtr]: number[]): number | undefined {
  const memory = host.memory();
  if (!memory || inPtr === undefined || outPtr === undefined || count === undefined || countOutPtr === undefined) return undefined;
  if (count === 0) return ERRNO_INVAL;
  const view = new DataView(memory.buffer);
  const clocks = readClockSubscriptions(view, inPtr, count);
  if (!clocks) return undefined;
  const deadline = Math.min(...clocks.map((c) => c.deadlineMs));
  const waitMs = deadline - performance.now();
  if (waitMs > 0) Atomics.wait(host.control, CONTROL.kill, 0, waitMs);
  if (Atomics.load(host.control, CONTROL.kill) !== 0) throw new InstanceKilled();
  const now = performance.now();
  // The memory may have grown (and its buffer changed) only through the module: not while it waited.
  let written = 0;
  for (const clock of clocks) {
    if (clock.deadlineMs > now) continue;
    const at = outPtr + written * EVENT_SIZE;
    view.setBigUint64(at, clock.userdata, true);
    view.setUint16(at + 8, ERRNO_SUCCESS, true);
    view.setUint8(at + 10, EVENTTYPE_CLOCK);
    for (let i = 11; i < EVENT_SIZE; i++) view.setUint8(at + i, 0);
    written += 1;
  }
  view.setUint32(countOutPtr, written, true);
  return ERRNO_SUCCESS;
}

interface ClockSubscription {
  userdata: bigint;
  /** When it is due, on performance.now()'s clock. */
  deadlineMs: number;
}

/** The subscriptions if all are clocks, else undefined. Deadlines in ms on performance.now()'s clock. */
export function readClockSubscriptions(
  view: DataView,
  inPtr: number,
  count: number,
  nowMs = performance.now(),
  epochMs = Date.now(),
): ClockSubscription[] | undefined {
  const clocks: ClockSubscription[] = [];
  for (let i = 0; i < count; i++) {
    const at = inPtr + i * SUBSCRIPTION_SIZE;
    if (view.getUint8(at + 8) !== EVENTTYPE_CLOCK) return undefined;
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
    clocks.push({ userdata: view.getBigUint64(at, true), deadlineMs });
  }
  return clocks;
}
