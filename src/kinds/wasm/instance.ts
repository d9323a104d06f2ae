// The daemon's side of one WebAssembly instance: the worker thread that holds it, its stdio,
// and how it ends (its own exit, a trap, or Kill, which terminates the thread at once).
import { Worker } from 'node:worker_threads';
import { failedPrecondition } from '../../core/errors.js';
import type { InstanceMessage, InstanceRequest } from './instance-protocol.js';
import { WASM_PAGE_BYTES } from './memory-cap.js';

const WORKER_URL = new URL('./instance-worker.js', import.meta.url);

export interface InstanceEnd {
  exitStatus: number;
  /** The signal Kill ended it with, if that is how it ended. */
  signal?: number;
  /** It needed more memory than the container's limit. */
  outOfMemory: boolean;
}

/** What the daemon gives for one instance; the worker's side is InstanceRequest. */
export type InstanceOptions = Omit<InstanceRequest, 'memoryGauge'>;

export class WasmInstance {
  /** Settles once the worker thread is gone (its descriptors are no longer in use). */
  readonly ended: Promise<InstanceEnd>;
  private status: number | undefined;
  private outOfMemory = false;
  private killedBy: number | undefined;
  private running = true;

  private constructor(
    private readonly worker: Worker,
    private readonly memoryGauge: Int32Array,
  ) {
    this.ended = new Promise((resolve) => {
      worker.once('exit', () => {
        this.running = false;
        if (this.status !== undefined) resolve({ exitStatus: this.status, outOfMemory: this.outOfMemory });
        else if (this.killedBy !== undefined) resolve({ exitStatus: 128 + this.killedBy, signal: this.killedBy, outOfMemory: false });
        else resolve({ exitStatus: 1, outOfMemory: false });
      });
    });
  }

  /** Starts the worker and waits until the module is compiled and instantiated. */
  static async create(options: InstanceOptions): Promise<WasmInstance> {
    const request: InstanceRequest = { ...options, memoryGauge: new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT) };
    const worker = new Worker(WORKER_URL, { workerData: request, stdout: false, stderr: false });
    let instance!: WasmInstance;
    const ready = new Promise<void>((resolve, reject) => {
      worker.on('message', (message: InstanceMessage) => {
        if (message.type === 'ready') {
          resolve();
        } else if (message.type === 'failed') {
          reject(failedPrecondition(`wasm module ${request.modulePath}: ${message.message}`));
        } else {
          instance.status = message.status;
          instance.outOfMemory = message.outOfMemory;
          // The module is done; the thread would idle on its message port.
          void worker.terminate();
        }
      });
      // An error the worker did not catch ends it (reported as exit status 1 if it ran).
      worker.on('error', (err) => reject(failedPrecondition(`wasm module ${request.modulePath}: ${err.message}`)));
      worker.once('exit', () => reject(failedPrecondition(`wasm module ${request.modulePath}: its worker ended before it was ready`)));
    });
    instance = new WasmInstance(worker, new Int32Array(request.memoryGauge));
    try {
      await ready;
    } catch (err) {
      await worker.terminate();
      throw err;
    }
    return instance;
  }

  start(): void {
    this.worker.postMessage('start');
  }

  /** Ends the instance at once, whatever it is doing; any signal kills (WASI has no handlers). */
  kill(signal: number): void {
    if (!this.running) return;
    if (this.killedBy === undefined) this.killedBy = signal;
    void this.worker.terminate();
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** The instance's linear memory in bytes, as its worker last saw it (see InstanceRequest.memoryGauge). */
  get memoryInUse(): number {
    return Atomics.load(this.memoryGauge, 0) * WASM_PAGE_BYTES;
  }
}
