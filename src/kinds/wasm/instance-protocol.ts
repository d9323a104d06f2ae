// What the daemon and an instance's worker thread (instance-worker.ts) say to each other.

/** What the worker is started with (workerData). */
export interface InstanceRequest {
  /** The module's file on the host (inside the container's rootfs). */
  modulePath: string;
  /** The exported function to run: `_start` for a WASI command. */
  entry: string;
  args: string[];
  env: Record<string, string>;
  /** Guest directory -> host directory. */
  preopens: Record<string, string>;
  /** stdin, stdout, stderr: descriptors of the daemon, open for the instance's life. */
  stdio: [number, number, number];
  /** The container's memory limit in bytes (or the kind's default): the most linear memory the module may have. */
  memoryLimit: number;
  /**
   * One Int32: the instance's linear memory in pages, updated by the worker whenever the module
   * calls WASI (the daemon reads it for Stats; a module that never calls the host shows the
   * size it started with).
   */
  memoryGauge: SharedArrayBuffer;
}

export type InstanceMessage =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | { type: 'exited'; status: number; outOfMemory: boolean };

/** A trap ends the instance like an abort ends a process (128 + SIGABRT), as wasmtime's CLI does. */
export const TRAP_EXIT_STATUS = 134;
/** A module that ran out of memory at its limit ends like a process the OOM killer took (128 + SIGKILL). */
export const OOM_EXIT_STATUS = 137;
