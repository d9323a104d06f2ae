// One WebAssembly instance, in a worker thread of its own: a trap, an endless loop or a memory
// blow-up stays in this thread, and the daemon ends it with Worker.terminate(). The module is
// compiled and instantiated when the worker starts (the container's Create), and runs when the
// daemon posts 'start' (the container's Start). WASI writes to the descriptors the daemon opened
// (FIFOs or pipes); worker threads share the process's descriptor table.
import { readFileSync, writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import type { InstanceRequest, InstanceMessage } from './instance-protocol.js';
import { OOM_EXIT_STATUS, TRAP_EXIT_STATUS } from './instance-protocol.js';
import { capMemory, pagesWithin, WASM_PAGE_BYTES } from './memory-cap.js';

const request = workerData as InstanceRequest;
const port = parentPort!;
const post = (message: InstanceMessage) => port.postMessage(message);

// node:wasi warns that it is experimental on load, to the daemon's stderr, once per worker. The
// daemon uses it on purpose; every other warning goes through as usual.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const text = typeof warning === 'string' ? warning : warning.message;
  if (/^WASI\b/.test(text)) return;
  (emitWarning as (...args: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;
const { WASI } = await import('node:wasi');

const gauge = new Int32Array(request.memoryGauge);
let memory: WebAssembly.Memory | undefined;
const recordMemory = () => {
  if (memory) Atomics.store(gauge, 0, memory.buffer.byteLength / WASM_PAGE_BYTES);
};

let run: () => number;
try {
  const bytes = readFileSync(request.modulePath);
  const module = new WebAssembly.Module(capMemory(bytes, pagesWithin(request.memoryLimit)));
  const wasi = new WASI({
    version: 'preview1',
    args: request.args,
    env: request.env,
    preopens: request.preopens,
    stdin: request.stdio[0],
    stdout: request.stdio[1],
    stderr: request.stdio[2],
    returnOnExit: true,
  });
  const instance = new WebAssembly.Instance(module, gaugedImports(wasi.getImportObject() as WebAssembly.Imports));
  const exported = instance.exports['memory'];
  if (exported instanceof WebAssembly.Memory) memory = exported;
  recordMemory();
  const entry = instance.exports[request.entry];
  if (typeof entry !== 'function') throw new Error(`the module exports no function "${request.entry}"`);
  // WASI starts a command by calling its `_start`; another entry is called the same way.
  const started = request.entry === '_start' ? instance : { exports: { ...instance.exports, _start: entry } };
  run = () => wasi.start(started as WebAssembly.Instance) ?? 0;
  post({ type: 'ready' });
} catch (err) {
  post({ type: 'failed', message: (err as Error).message });
  throw err;
}

port.once('message', () => {
  let status: number;
  try {
    status = run();
  } catch (err) {
    // A trap (unreachable, out-of-bounds access, stack overflow...): the message goes to the
    // container's stderr, so that it shows in its log.
    status = TRAP_EXIT_STATUS;
    toStderr(`wasm trap: ${(err as Error).message}`);
  }
  recordMemory();
  // The engine refused to grow the memory past the limit, and the module failed for it: that
  // is what the OOM killer would have ended. (A module that failed for another reason while
  // its memory happened to be full is counted the same: the two cannot be told apart.)
  const outOfMemory = status !== 0 && memory !== undefined && memory.buffer.byteLength + WASM_PAGE_BYTES > request.memoryLimit;
  if (outOfMemory) {
    status = OOM_EXIT_STATUS;
    toStderr(`wasm: out of memory: the module's linear memory reached the container's limit of ${request.memoryLimit} bytes`);
  }
  post({ type: 'exited', status, outOfMemory });
});

/** WASI's imports, each one also updating the memory gauge (the module may have grown its memory since). */
function gaugedImports(imports: WebAssembly.Imports): WebAssembly.Imports {
  const gauged: WebAssembly.Imports = {};
  for (const [moduleName, functions] of Object.entries(imports)) {
    gauged[moduleName] = Object.fromEntries(
      Object.entries(functions).map(([name, fn]) => [
        name,
        typeof fn === 'function'
          ? (...args: unknown[]) => {
              recordMemory();
              return (fn as (...a: unknown[]) => unknown)(...args);
            }
          : fn,
      ]),
    );
  }
  return gauged;
}

function toStderr(line: string): void {
  try {
    writeSync(request.stdio[2], `${line}\n`);
  } catch {
    // stderr is gone: the exit status still tells
  }
}
