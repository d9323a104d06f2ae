// A wasm worker thread: hosts many WebAssembly instances, which take turns on it. Every module is
// suspendable (rewrite.ts): an instance that waits (a sleep, a read of stdin) is suspended and
// the thread runs the others; one that computes is suspended at a fuel check once its time slice
// is over, and queued behind the others. Each turn is a task of the thread's event loop, so the
// daemon's commands (load, run, kill, stdin) are served between turns.
//
// A trap or proc_exit ends its own instance only; linear memory is capped per instance
// (memory-cap.ts), so a memory blow-up stays inside its limit; a killed instance is dropped
// where it is suspended, or unwinds at its next call into the host (its kill cell).
//
// CommonJS, like the modules it loads: a worker that loads an ES module first starts Node's ES
// module loader, which costs about half as much again as the rest of the thread's start.
import { writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { OOM_EXIT_STATUS, TRAP_EXIT_STATUS, type InstanceJob, type WorkerCommand, type WorkerMessage } from './instance-protocol.cjs';
import { StdinBuffer } from './stdin-buffer.cjs';
import { Suspender } from './suspend.cjs';
import { type Blocked, CONTROL, controlledImports, GuestDescriptors, InstanceKilled, ProcExit, WASM_PAGE_BYTES } from './wasi-imports.cjs';

const port = parentPort!;
const post = (message: WorkerMessage) => port.postMessage(message);

/** How long an instance may run before a fuel check gives the thread to the next one (ms). */
const TIME_SLICE_MS = 10;

// node:wasi warns that it is experimental on load, to the daemon's stderr, once per worker. The
// daemon uses it on purpose; every other warning goes through as usual.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const text = typeof warning === 'string' ? warning : warning.message;
  if (/^WASI\b/.test(text)) return;
  (emitWarning as (...args: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;
// After the filter above: node:wasi warns as it loads.
const { WASI } = require('node:wasi') as typeof import('node:wasi');

interface Guest {
  job: InstanceJob;
  control: Int32Array;
  memory: WebAssembly.Memory;
  suspender: Suspender;
  entry: () => unknown;
  stdin: StdinBuffer | undefined;
  /** The host call it is suspended in, while it is. */
  blocked: Blocked | undefined;
  started: boolean;
  descriptors: GuestDescriptors;
}

const guests = new Map<number, Guest>();
/** Guests ready for a turn, in order. */
const ready: Guest[] = [];
let turnQueued = false;
/** The guest whose turn it is, and when its slice began. */
let current: Guest | undefined;
let sliceStart = 0;

port.on('message', (command: WorkerCommand) => {
  switch (command.type) {
    case 'load':
      load(command.job);
      break;
    case 'run':
      run(command.id);
      break;
    case 'kill':
      kill(command.id);
      break;
    case 'stdin':
      guests.get(command.id)?.stdin?.receive(command.chunk);
      break;
  }
});
post({ type: 'idle' });

function load(job: InstanceJob): void {
  let descriptors: GuestDescriptors | undefined;
  try {
    const control = new Int32Array(job.control);
    const wasi = new WASI({
      version: 'preview1',
      args: job.args,
      env: job.env,
      preopens: job.preopens,
      stdin: job.stdio[0],
      stdout: job.stdio[1],
      stderr: job.stdio[2],
      returnOnExit: true,
    });
    const wasiImports = wasi.getImportObject() as { wasi_snapshot_preview1: { fd_close: (fd: number) => number } };
    const opened = new GuestDescriptors(wasiImports.wasi_snapshot_preview1.fd_close, Object.keys(job.preopens).length);
    descriptors = opened;
    const stdin = job.stdinForwarded ? new StdinBuffer(() => post({ type: 'want-stdin', id: job.id })) : undefined;
    let guest: Guest | undefined;
    const imports = controlledImports(wasiImports as unknown as WebAssembly.Imports, {
      control,
      memory: () => guest?.memory,
      block: (call) => block(guest!, call),
      sliceOver: () => performance.now() - sliceStart >= TIME_SLICE_MS,
      stdin,
      opened: (fd) => opened.opened(fd),
    });
    const instance = new WebAssembly.Instance(job.module, imports);
    const { memory } = instance.exports;
    const suspender = Suspender.of(instance.exports, memory instanceof WebAssembly.Memory ? memory : undefined);
    if (!suspender) throw new Error('the module exports no memory');
    const entry = instance.exports[job.entry];
    if (typeof entry !== 'function') throw new Error(`the module exports no function "${job.entry}"`);
    // node:wasi needs the memory; the entry is called here, turn by turn, not by wasi.start.
    wasi.start({ exports: { memory, _start: () => undefined } } as unknown as WebAssembly.Instance);
    const loaded: Guest = {
      job,
      control,
      memory: memory as WebAssembly.Memory,
      suspender,
      entry: entry as () => unknown,
      stdin,
      blocked: undefined,
      started: false,
      descriptors: opened,
    };
    guest = loaded;
    recordMemory(loaded);
    guests.set(job.id, loaded);
    post({ type: 'ready', id: job.id });
  } catch (err) {
    descriptors?.closeAll();
    post({ type: 'failed', id: job.id, message: (err as Error).message });
  }
}

function run(id: number): void {
  const guest = guests.get(id);
  if (!guest || guest.started) return;
  guest.started = true;
  queue(guest);
}

/** A host call that may wait (wasi-imports.cts): on the rewound call, its result; else its result now, or the instance suspends. */
function block(guest: Guest, call: () => number | Blocked): number {
  let outcome: number | Blocked;
  if (guest.suspender.resumed()) {
    const { blocked } = guest;
    guest.blocked = undefined;
    outcome = blocked!.complete();
  } else {
    outcome = call();
  }
  if (typeof outcome === 'number') return outcome;
  guest.blocked = outcome;
  guest.suspender.unwind();
  // Ignored: the instance unwinds.
  return 0;
}

function queue(guest: Guest): void {
  ready.push(guest);
  if (turnQueued) return;
  turnQueued = true;
  setImmediate(nextTurn);
}

function nextTurn(): void {
  turnQueued = false;
  const guest = ready.shift();
  if (guest) turn(guest);
  if (ready.length > 0 && !turnQueued) {
    turnQueued = true;
    setImmediate(nextTurn);
  }
}

/** Runs `guest` until it ends or suspends. */
function turn(guest: Guest): void {
  if (guests.get(guest.job.id) !== guest) return;
  current = guest;
  sliceStart = performance.now();
  try {
    if (guest.suspender.isSuspended) guest.suspender.rewind();
    guest.entry();
  } catch (err) {
    end(guest, err);
    return;
  } finally {
    current = undefined;
  }
  if (guest.suspender.suspended()) {
    recordMemory(guest);
    const { blocked } = guest;
    blocked!.ready.then(
      () => queue(guest),
      (err: unknown) => end(guest, err),
    );
    return;
  }
  end(guest, undefined);
}

/**
 * An ended instance's linear memory (the pages it touched) and its WASI state go back only when
 * this thread's collector finds them, which V8 puts off for hundreds of instances (measured:
 * about 57 KiB kept per ended instance, 14 MiB after 250 on two threads). So a collection
 * follows every COLLECT_EVERY_ENDS ends, and once ends have stopped for QUIET_MS. (Collecting
 * each time the thread was left with no instance made a full collection of nearly every
 * short-lived instance: 57% of the thread's time while they ran at 200 per second.)
 * kuasard runs with --expose-gc (KUASARD_NODE_FLAGS); without it, V8 alone decides.
 */
const COLLECT_EVERY_ENDS = 32;
const QUIET_MS = 200;
const collectGarbage = (globalThis as { gc?: () => void }).gc;
let endsSinceCollection = 0;
let collectionQueued = false;
let quietTimer: NodeJS.Timeout | undefined;

function collectAfterEnd(): void {
  endsSinceCollection += 1;
  if (!collectGarbage) return;
  if (endsSinceCollection >= COLLECT_EVERY_ENDS) {
    collectSoon(collectGarbage);
    return;
  }
  if (quietTimer) quietTimer.refresh();
  else {
    quietTimer = setTimeout(() => {
      quietTimer = undefined;
      if (endsSinceCollection > 0) collectSoon(collectGarbage);
    }, QUIET_MS);
  }
}

/** After this turn: the ends of one burst are collected once. */
function collectSoon(collect: () => void): void {
  if (collectionQueued) return;
  collectionQueued = true;
  setImmediate(() => {
    collectionQueued = false;
    endsSinceCollection = 0;
    collect();
  });
}

/** The instance is over: how it ended (undefined: its entry returned) told to the daemon. */
function end(guest: Guest, reason: unknown): void {
  if (guests.get(guest.job.id) !== guest) return;
  guests.delete(guest.job.id);
  collectAfterEnd();
  guest.blocked?.cancel?.();
  guest.descriptors.closeAll();
  const { id } = guest.job;
  if (reason instanceof InstanceKilled) {
    post({ type: 'exited', id, status: 0, outOfMemory: false, killed: true });
    return;
  }
  let status = 0;
  if (reason instanceof ProcExit) status = reason.status;
  else if (reason !== undefined) {
    // A trap (unreachable, out-of-bounds access, stack overflow...): the message goes to the
    // container's stderr, so that it shows in its log.
    status = TRAP_EXIT_STATUS;
    toStderr(guest, `wasm trap: ${(reason as Error).message}`);
  }
  recordMemory(guest);
  const memoryBytes = guest.memory.buffer.byteLength;
  // The engine refused to grow the memory past the limit, and the module failed for it: that
  // is what the OOM killer would have ended. (A module that failed for another reason while
  // its memory happened to be full is counted the same: the two cannot be told apart.)
  const outOfMemory = status !== 0 && memoryBytes + WASM_PAGE_BYTES > guest.job.memoryLimit;
  if (outOfMemory) {
    status = OOM_EXIT_STATUS;
    toStderr(guest, `wasm: out of memory: the module's linear memory reached the container's limit of ${guest.job.memoryLimit} bytes`);
  }
  post({ type: 'exited', id, status, outOfMemory, killed: false });
}

/** Kill of an instance that is not running now (this thread is serving a message): dropped where it is. */
function kill(id: number): void {
  const guest = guests.get(id);
  if (guest && guest !== current) end(guest, new InstanceKilled());
}

function recordMemory(guest: Guest): void {
  Atomics.store(guest.control, CONTROL.memoryPages, guest.memory.buffer.byteLength / WASM_PAGE_BYTES);
}

function toStderr(guest: Guest, line: string): void {
  try {
    writeSync(guest.job.stdio[2], `${line}\n`);
  } catch {
    // stderr is gone: the exit status still tells
  }
}
