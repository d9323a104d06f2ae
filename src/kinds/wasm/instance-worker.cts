// A wasm worker thread: runs WebAssembly instances one at a time, each in the thread alone, so
// that a trap, an endless loop or a memory blow-up stays in this thread; the daemon ends a
// running instance through its kill cell (wasi-imports.ts) or, for a module that never calls
// the host, with Worker.terminate(). 'load' instantiates a module (the container's Create),
// 'run' runs it (Start). WASI writes to the descriptors the daemon opened (FIFOs or pipes);
// worker threads share the process's descriptor table.
//
// CommonJS, like the modules it loads: a worker that loads an ES module first starts Node's ES
// module loader, which costs about half as much again as the rest of the thread's start.
import { writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { OOM_EXIT_STATUS, TRAP_EXIT_STATUS, type InstanceJob, type WorkerCommand, type WorkerMessage } from './instance-protocol.cjs';
import { CONTROL, controlledImports, InstanceKilled, WASM_PAGE_BYTES } from './wasi-imports.cjs';

const port = parentPort!;
const post = (message: WorkerMessage) => port.postMessage(message);

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

interface Loaded {
  job: InstanceJob;
  control: Int32Array;
  memory: WebAssembly.Memory | undefined;
  run: () => number;
}
let loaded: Loaded | undefined;

port.on('message', (command: WorkerCommand) => {
  if (command.type === 'load') load(command.job);
  else run();
});
post({ type: 'idle' });

function load(job: InstanceJob): void {
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
    const state: Loaded = { job, control, memory: undefined, run: () => 0 };
    const imports = controlledImports(wasi.getImportObject() as WebAssembly.Imports, { control, memory: () => state.memory });
    const instance = new WebAssembly.Instance(job.module, imports);
    const exported = instance.exports['memory'];
    if (exported instanceof WebAssembly.Memory) state.memory = exported;
    recordMemory(state);
    const entry = instance.exports[job.entry];
    if (typeof entry !== 'function') throw new Error(`the module exports no function "${job.entry}"`);
    // WASI starts a command by calling its `_start`; another entry is called the same way.
    const started = job.entry === '_start' ? instance : { exports: { ...instance.exports, _start: entry } };
    state.run = () => wasi.start(started as WebAssembly.Instance) ?? 0;
    loaded = state;
    post({ type: 'ready' });
  } catch (err) {
    post({ type: 'failed', message: (err as Error).message });
  }
}

function run(): void {
  const state = loaded;
  if (!state) return;
  let status: number;
  try {
    status = state.run();
  } catch (err) {
    // Killed: the daemon is terminating this thread and reports the signal itself.
    if (err instanceof InstanceKilled) return;
    // A trap (unreachable, out-of-bounds access, stack overflow...): the message goes to the
    // container's stderr, so that it shows in its log.
    status = TRAP_EXIT_STATUS;
    toStderr(state, `wasm trap: ${(err as Error).message}`);
  }
  recordMemory(state);
  const memoryBytes = state.memory?.buffer.byteLength ?? 0;
  // The engine refused to grow the memory past the limit, and the module failed for it: that
  // is what the OOM killer would have ended. (A module that failed for another reason while
  // its memory happened to be full is counted the same: the two cannot be told apart.)
  const outOfMemory = status !== 0 && state.memory !== undefined && memoryBytes + WASM_PAGE_BYTES > state.job.memoryLimit;
  if (outOfMemory) {
    status = OOM_EXIT_STATUS;
    toStderr(state, `wasm: out of memory: the module's linear memory reached the container's limit of ${state.job.memoryLimit} bytes`);
  }
  loaded = undefined;
  post({ type: 'exited', status, outOfMemory });
}

function recordMemory(state: Loaded): void {
  if (state.memory) Atomics.store(state.control, CONTROL.memoryPages, state.memory.buffer.byteLength / WASM_PAGE_BYTES);
}

function toStderr(state: Loaded, line: string): void {
  try {
    writeSync(state.job.stdio[2], `${line}\n`);
  } catch {
    // stderr is gone: the exit status still tells
  }
}
