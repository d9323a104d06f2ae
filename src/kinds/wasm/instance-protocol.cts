// What the daemon and a wasm worker thread (instance-worker.cts) say to each other. A worker
// hosts many instances at once, each named by an id the daemon gives it; they take turns on the
// thread (instance-worker.cts schedules them).

/** One instance to load: everything but the module's bytes, which arrive compiled. */
export interface InstanceJob {
  id: number;
  /** Compiled from the suspendable rewrite of the module (rewrite.ts). */
  module: WebAssembly.Module;
  /** The exported function to run: `_start` for a WASI command. */
  entry: string;
  args: string[];
  env: Record<string, string>;
  /** Guest directory -> host directory. */
  preopens: Record<string, string>;
  /** stdin, stdout, stderr: descriptors of the daemon, open for the instance's life. */
  stdio: [number, number, number];
  /** stdin comes in 'stdin' messages (a pipe the daemon reads, instance.ts), not from stdio[0]. */
  stdinForwarded: boolean;
  /** The container's memory limit in bytes: the module's memory maximum is capped to fit in it. */
  memoryLimit: number;
  /** The instance's control block (wasi-imports.cts CONTROL): memory gauge and kill cell. */
  control: SharedArrayBuffer;
}

export type WorkerCommand =
  | { type: 'load'; job: InstanceJob }
  | { type: 'run'; id: number }
  /** Ends the instance wherever it is suspended (one that runs sees its kill cell instead). */
  | { type: 'kill'; id: number }
  /** What the daemon read from the instance's stdin, after a 'want-stdin'; null at end-of-file. */
  | { type: 'stdin'; id: number; chunk: Uint8Array | null };

export type WorkerMessage =
  /** The worker has started and can take jobs. */
  | { type: 'idle' }
  | { type: 'ready'; id: number }
  /** Loading failed; what node:wasi had opened for it is closed. */
  | { type: 'failed'; id: number; message: string }
  /** The instance waits for its stdin: the daemon reads one chunk and sends it. */
  | { type: 'want-stdin'; id: number }
  /** The instance is over: its own end (status), or killed; what node:wasi opened for it is closed. */
  | { type: 'exited'; id: number; status: number; outOfMemory: boolean; killed: boolean };

/** A trap ends the instance like an abort ends a process (128 + SIGABRT), as wasmtime's CLI does. */
export const TRAP_EXIT_STATUS = 134;
/** A module that ran out of memory at its limit ends like a process the OOM killer took (128 + SIGKILL). */
export const OOM_EXIT_STATUS = 137;
