// The wasm kind's worker threads. Starting one costs a Node environment (tens of milliseconds
// of CPU, about 7 MiB), so the pool keeps a few started ones ready for the next Create, and
// takes back a worker whose instance ended on its own (instance.ts says when). Warm workers
// are for a node that runs wasm containers: they are started by the first container, not
// before, and ended, all of them, once no container has taken a worker for `warmIdleMs`. A worker serves at most
// MAX_INSTANCES_PER_WORKER instances: node:wasi keeps a little native state per instance until
// its thread ends, so a worker is retired before that adds up.
import { Worker } from 'node:worker_threads';
import { releaseFreeMemory } from '../../linux/libc/processes.js';
import type { WorkerMessage } from './instance-protocol.cjs';

const WORKER_URL = new URL('./instance-worker.cjs', import.meta.url);

export const MAX_INSTANCES_PER_WORKER = 64;
/** Quiet time after the last worker ended before free memory is handed back. */
const RELEASE_DELAY_MS = 1_000;

export interface WorkerPoolOptions {
  /** Started workers kept ready beyond those in use. */
  warm: number;
  /** Idle workers beyond `warm` end after this long unused (ms). */
  idleMs: number;
  /** The warm workers too end once no worker was taken for this long (ms); the next acquire() starts them again. */
  warmIdleMs: number;
}

/** A worker of the pool, lent to one instance at a time. */
export interface PooledWorker {
  readonly thread: Worker;
  /** Instances it has served, the current one included. */
  served: number;
  /** False once its thread has ended. */
  alive: boolean;
}

export class WorkerPool {
  private readonly idle: { worker: PooledWorker; since: number }[] = [];
  private booting = 0;
  private closed = false;
  private releaseTimer: NodeJS.Timeout | undefined;
  private readonly trimTimer: NodeJS.Timeout;
  /** When a worker was last taken; -Infinity before the first: no warm worker is kept until then. */
  private lastAcquire = -Infinity;

  constructor(private readonly options: WorkerPoolOptions) {
    this.trimTimer = setInterval(() => this.trim(), Math.max(1_000, Math.min(options.idleMs, options.warmIdleMs) / 2)).unref();
  }

  /** A started worker for one instance: an idle one, else a new one (and the warm ones started behind it). */
  async acquire(): Promise<PooledWorker> {
    this.lastAcquire = Date.now();
    const ready = this.idle.pop()?.worker ?? (await startWorker(this.forget));
    ready.served += 1;
    this.refill();
    return ready;
  }

  /** Takes back a worker whose instance ended on its own (it waits for the next 'load'). */
  release(worker: PooledWorker): void {
    if (!worker.alive) return;
    if (this.closed || worker.served >= MAX_INSTANCES_PER_WORKER) {
      void worker.thread.terminate();
      return;
    }
    this.idle.push({ worker, since: Date.now() });
  }

  /** Ends every idle worker and stops refilling (workers in use end with their instances). */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.trimTimer);
    clearTimeout(this.releaseTimer);
    await Promise.all(this.idle.splice(0).map(({ worker }) => worker.thread.terminate()));
  }

  get idleCount(): number {
    return this.idle.length;
  }

  /** How many idle workers to keep: `warm` while containers take workers, none once they stopped for warmIdleMs. */
  private target(): number {
    return Date.now() - this.lastAcquire < this.options.warmIdleMs ? this.options.warm : 0;
  }

  private refill(): void {
    while (!this.closed && this.idle.length + this.booting < this.target()) {
      this.booting += 1;
      startWorker(this.forget)
        .then((worker) => {
          if (this.closed) void worker.thread.terminate();
          else this.idle.push({ worker, since: Date.now() });
        })
        // A worker that cannot start now will not be missed: acquire() starts one when needed.
        .catch(() => undefined)
        .finally(() => (this.booting -= 1));
    }
  }

  /**
   * A worker that ended (for whatever reason) is never lent out again. What its thread
   * allocated stays in the C allocator's arenas until they are trimmed: trimmed once the ends
   * of a burst are over, so that the daemon shrinks back instead of keeping the burst's peak.
   */
  private readonly forget = (worker: PooledWorker): void => {
    const at = this.idle.findIndex((entry) => entry.worker === worker);
    if (at >= 0) this.idle.splice(at, 1);
    clearTimeout(this.releaseTimer);
    this.releaseTimer = setTimeout(releaseFreeMemory, RELEASE_DELAY_MS).unref();
  };

  /** Ends the workers that sat unused for idleMs, down to the target (the oldest first). */
  private trim(): void {
    const cutoff = Date.now() - this.options.idleMs;
    const keep = this.target();
    while (this.idle.length > keep && (this.idle[0]?.since ?? Infinity) < cutoff) {
      void this.idle.shift()?.worker.thread.terminate();
    }
  }
}

/** A new worker, once it has loaded node:wasi and waits for a job; `onExit` is told when it ends. */
async function startWorker(onExit: (worker: PooledWorker) => void): Promise<PooledWorker> {
  const thread = new Worker(WORKER_URL, { stdout: false, stderr: false });
  // Workers never keep the daemon alive on their own: its servers do.
  thread.unref();
  const worker: PooledWorker = { thread, served: 0, alive: true };
  thread.once('exit', () => {
    worker.alive = false;
    onExit(worker);
  });
  // An uncaught error ends the worker (its 'exit' follows and drops it from the pool). Without a
  // listener of its own, one raised while the worker sits idle, when no instance listens, would
  // be thrown in kuasard's main thread and end the daemon.
  thread.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    const onMessage = (message: WorkerMessage) => {
      if (message.type !== 'idle') return;
      cleanup();
      resolve();
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onExit = (code: number) => onError(new Error(`wasm worker exited with code ${code} while starting`));
    const cleanup = () => {
      thread.off('message', onMessage);
      thread.off('error', onError);
      thread.off('exit', onExit);
    };
    thread.on('message', onMessage);
    thread.once('error', onError);
    thread.once('exit', onExit);
  });
  return worker;
}
