// Whether the wasm kind can run here: kuasard's own Node runs WebAssembly (not under --jitless,
// which removes it), and (in `kuasar doctor`) a module compiled on the main thread runs on a
// worker thread, as every container's instance does (worker-pool.ts).
import { Worker } from 'node:worker_threads';
import { type CheckContext, type CheckResult, fail, ok } from '../../kind-api/checks.js';

/** `(module (func (export "f") (result i32) i32.const 42))` */
const ANSWER_MODULE = Buffer.from('0061736d010000000105016000017f03020100070501016600000a06010400412a0b', 'hex');
const ANSWER = 42;
/** A worker thread that has not answered by then counts as hanging (one starts in tens of ms). */
const WORKER_TIMEOUT_MS = 10_000;

const WORKER_SOURCE = `const { parentPort } = require('node:worker_threads');
parentPort.once('message', (module) => parentPort.postMessage(new WebAssembly.Instance(module).exports.f()));`;

export async function wasmChecks(context: CheckContext): Promise<CheckResult[]> {
  const name = 'webassembly';
  if (typeof WebAssembly !== 'object') {
    return [
      fail(
        name,
        `Node ${process.version} has no WebAssembly here (run with --jitless?)`,
        'run kuasard without --jitless or --noexpose-wasm',
      ),
    ];
  }
  const started = performance.now();
  try {
    const module = await WebAssembly.compile(ANSWER_MODULE);
    // At start a thread is not worth its tens of milliseconds: the kind starts its warm workers next.
    if (context.depth === 'start') return [ok(name, `Node ${process.version} compiles modules`)];
    const answer = await answerOnWorker(module);
    if (answer !== ANSWER)
      return [fail(name, `a module on a worker thread answered ${String(answer)}, not ${ANSWER}`, 'report this as a bug')];
  } catch (err) {
    return [
      fail(name, `a module could not run on a worker thread: ${(err as Error).message}`, 'check that Node can start worker threads here'),
    ];
  }
  return [ok(name, `Node ${process.version} ran a module on a worker thread in ${Math.round(performance.now() - started)} ms`)];
}

function answerOnWorker(module: WebAssembly.Module): Promise<unknown> {
  const worker = new Worker(WORKER_SOURCE, { eval: true });
  return new Promise<unknown>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${WORKER_TIMEOUT_MS} ms`)), WORKER_TIMEOUT_MS);
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the worker exited with ${code}`)));
    worker.postMessage(module);
    const done = () => clearTimeout(timer);
    worker.once('message', done).once('error', done).once('exit', done);
  }).finally(() => worker.terminate());
}
