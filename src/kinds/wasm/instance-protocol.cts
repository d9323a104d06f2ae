// What the daemon and a wasm worker thread (instance-worker.cts) say to each other. A worker
// hosts one instance at a time and may host many in turn: after an instance ends on its own,
// the worker goes back to the pool (worker-pool.ts) and waits for the next 'load'.

/** One instance to load: everything but the module's bytes, which arrive compiled. */
export interface InstanceJob {
  module: WebAssembly.Module;
  /** The exported function to run: `_start` for a WASI command. */
  entry: string;
  args: string[];
  env: Record<string, string>;
  /** Guest directory -> host directory. */
  preopens: Record<string, string>;
  /** stdin, stdout, stderr: descriptors of the daemon, open for the instance's life. */
  stdio: [number, number, number];
  /** The container's memory limit in bytes: the module's memory maximum is capped to fit in it. */
  memoryLimit: number;
  /** The instance's control block (wasi-imports.cts CONTROL): memory gauge and kill cell. */
  control: SharedArrayBuffer;
}

export type WorkerCommand = { type: 'load'; job: InstanceJob } | { type: 'run' };

export type WorkerMessage =
  /** The worker has started and can take a job. */
  | { type: 'idle' }
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  /** The instance ended on its own (not killed); the worker can take another. */
  | { type: 'exited'; status: number; outOfMemory: boolean };

/** A trap ends the instance like an abort ends a process (128 + SIGABRT), as wasmtime's CLI does. */
export const TRAP_EXIT_STATUS = 134;
/** A module that ran out of memory at its limit ends like a process the OOM killer took (128 + SIGKILL). */
export const OOM_EXIT_STATUS = 137;
