// The daemon's side of one WebAssembly instance: the pooled worker thread it runs on, and how
// it ends (its own exit, a trap, or Kill). Kill sets the instance's kill cell and wakes it (a
// module in a host call or asleep unwinds at once), then terminates the thread (a module in a
// loop that never calls the host stops at the engine's next interrupt check). A killed worker
// is never reused; one whose instance ended on its own, its memory small, goes back to the pool.
import { failedPrecondition } from '../../base/errors.js';
import type { InstanceJob, WorkerMessage } from './instance-protocol.cjs';
import { CONTROL, CONTROL_CELLS, WASM_PAGE_BYTES } from './wasi-imports.cjs';
import type { PooledWorker, WorkerPool } from './worker-pool.js';

export interface InstanceEnd {
  exitStatus: number;
  /** The signal Kill ended it with, if that is how it ended. */
  signal?: number;
  /** It needed more memory than the container's limit. */
  outOfMemory: boolean;
}

/** What the daemon gives for one instance; the control block is the instance's own. */
export type InstanceOptions = Omit<InstanceJob, 'control'>;

/**
 * The most linear memory an instance may have ended with for its worker to serve another: the
 * memory is the engine's, outside the JS heap, and an idle worker allocates nothing that would
 * make its collector run and free it. A worker whose instance grew bigger is ended instead.
 */
const REUSABLE_MEMORY_BYTES = 1024 * 1024;

/** Exit status of an instance whose worker failed outside the module (an error of the daemon's own). */
const WORKER_FAILURE_STATUS = 1;

export class WasmInstance {
  /** Settles once the instance is over and its worker no longer uses its descriptors. */
  readonly ended: Promise<InstanceEnd>;
  private finish!: (end: InstanceEnd) => void;
  private killedBy: number | undefined;
  private running = true;

  private constructor(
    private readonly pool: WorkerPool,
    private readonly worker: PooledWorker,
    private readonly control: Int32Array,
  ) {
    this.ended = new Promise((resolve) => (this.finish = resolve));
  }

  /** Loads the module on a pooled worker and waits until it is instantiated. */
  static async create(pool: WorkerPool, options: InstanceOptions): Promise<WasmInstance> {
    const job: InstanceJob = { ...options, control: new SharedArrayBuffer(CONTROL_CELLS * Int32Array.BYTES_PER_ELEMENT) };
    const worker = await pool.acquire();
    const instance = new WasmInstance(pool, worker, new Int32Array(job.control));
    await instance.load(job);
    return instance;
  }

  private load(job: InstanceJob): Promise<void> {
    const { thread } = this.worker;
    return new Promise<void>((resolve, reject) => {
      const onMessage = (message: WorkerMessage) => {
        if (message.type === 'ready') {
          resolve();
        } else if (message.type === 'failed') {
          detach();
          this.running = false;
          // The worker stays sound: the module never ran.
          this.pool.release(this.worker);
          this.finish({ exitStatus: WORKER_FAILURE_STATUS, outOfMemory: false });
          reject(failedPrecondition(`wasm module: ${message.message}`));
        } else if (message.type === 'exited') {
          // Killed while it was ending (a kill wakes a module to end-of-file on its stdin, say):
          // the thread is being terminated, and 'exit' reports the signal.
          if (this.killedBy !== undefined) return;
          detach();
          this.running = false;
          if (this.memoryInUse <= REUSABLE_MEMORY_BYTES) this.pool.release(this.worker);
          else void thread.terminate();
          this.finish({ exitStatus: message.status, outOfMemory: message.outOfMemory });
        }
      };
      // An error the worker did not catch ends the thread; 'exit' follows.
      const onError = (err: Error) => reject(failedPrecondition(`wasm worker: ${err.message}`));
      const onExit = () => {
        detach();
        this.running = false;
        const signal = this.killedBy;
        this.finish(
          signal !== undefined
            ? { exitStatus: 128 + signal, signal, outOfMemory: false }
            : { exitStatus: WORKER_FAILURE_STATUS, outOfMemory: false },
        );
        reject(failedPrecondition('wasm worker ended before the module was ready'));
      };
      const detach = () => {
        thread.off('message', onMessage);
        thread.off('error', onError);
        thread.off('exit', onExit);
      };
      thread.on('message', onMessage);
      thread.on('error', onError);
      thread.on('exit', onExit);
      thread.postMessage({ type: 'load', job });
    });
  }

  start(): void {
    this.worker.thread.postMessage({ type: 'run' });
  }

  /** Ends the instance at once, whatever it is doing; any signal kills (WASI has no handlers). */
  kill(signal: number): void {
    if (!this.running) return;
    if (this.killedBy === undefined) {
      this.killedBy = signal;
      Atomics.store(this.control, CONTROL.kill, signal);
      Atomics.notify(this.control, CONTROL.kill);
    }
    void this.worker.thread.terminate();
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** The instance's linear memory in bytes, as of its last call into the host. */
  get memoryInUse(): number {
    return Atomics.load(this.control, CONTROL.memoryPages) * WASM_PAGE_BYTES;
  }
}
