// The wasm kind's worker threads. Each hosts many instances at once (instance-worker.cts takes
// them in turns), so a node runs a handful of threads whatever its number of containers: starting
// one costs a Node environment (tens of milliseconds of CPU, about 7 MiB). The first container
// starts them; a new instance goes to the thread hosting the fewest, and a thread that hosted
// none for `idleMs` ends. A thread hosts at most MAX_INSTANCES_PER_THREAD instances in its life:
// node:wasi keeps a little native state per instance until its thread ends, so a thread is
// retired (takes no new instance, ends with its last) before that adds up.
import { Worker } from 'node:worker_threads';
import { releaseFreeMemory } from '../../linux/libc/processes.js';
import type { WorkerCommand, WorkerMessage } from './instance-protocol.cjs';

const WORKER_URL = new URL('./instance-worker.cjs', import.meta.url);

export const MAX_INSTANCES_PER_THREAD = 4096;
/** Quiet time after the last thread ended before free memory is handed back. */
const RELEASE_DELAY_MS = 1_000;

export interface WorkerPoolOptions {
  /** Threads that share the instances. */
  threads: number;
  /** A thread that hosted no instance for this long ends (ms); the next acquire() starts one again. */
  idleMs: number;
}

/** What a thread tells one of its instances. */
export interface HostedInstance {
  message(message: WorkerMessage): void;
  /** The thread ended: the instance with it. */
  threadEnded(): void;
}

/** One worker thread and the instances it hosts. */
export class WasmThread {
  private readonly hosted = new Map<number, HostedInstance>();
  /** Instances it has been given, in its life. */
  served = 0;
  alive = true;
  /** When it last hosted nothing. */
  idleSince = Date.now();

  constructor(readonly thread: Worker) {
    thread.on('message', (message: WorkerMessage) => {
      if (message.type !== 'idle') this.hosted.get(message.id)?.message(message);
    });
  }

  get load(): number {
    return this.hosted.size;
  }

  get retiring(): boolean {
    return this.served >= MAX_INSTANCES_PER_THREAD;
  }

  host(id: number, instance: HostedInstance): void {
    this.served += 1;
    this.hosted.set(id, instance);
  }

  /** The instance is over; a retiring thread ends with its last. */
  leave(id: number): void {
    this.hosted.delete(id);
    if (this.hosted.size > 0) return;
    this.idleSince = Date.now();
    if (this.retiring) void this.thread.terminate();
  }

  post(command: WorkerCommand): void {
    this.thread.postMessage(command);
  }

  /** Its thread ended: every instance it hosted ended with it. */
  ended(): void {
    this.alive = false;
    for (const instance of [...this.hosted.values()]) instance.threadEnded();
    this.hosted.clear();
  }
}

export class WorkerPool {
  private readonly threads: WasmThread[] = [];
  private starting: Promise<WasmThread> | undefined;
  private closed = false;
  private releaseTimer: NodeJS.Timeout | undefined;
  private readonly trimTimer: NodeJS.Timeout;

  constructor(private readonly options: WorkerPoolOptions) {
    this.trimTimer = setInterval(() => this.trim(), Math.max(1_000, options.idleMs / 2)).unref();
  }

  /**
   * The thread for a new instance: the one hosting the fewest. Threads start as they are needed,
   * one at a time; while one starts, the instance goes to a running one if there is any.
   */
  async acquire(): Promise<WasmThread> {
    const open = this.threads.filter((t) => t.alive && !t.retiring);
    if (open.length < this.options.threads && !this.starting) {
      this.starting = startThread(this.forget).then(
        (started) => {
          this.starting = undefined;
          if (this.closed) void started.thread.terminate();
          else this.threads.push(started);
          return started;
        },
        (err: unknown) => {
          this.starting = undefined;
          throw err;
        },
      );
    }
    const least = open.reduce<WasmThread | undefined>((best, t) => (!best || t.load < best.load ? t : best), undefined);
    return least ?? (await this.starting!);
  }

  /** Ends every thread (instances still hosted end with them). */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.trimTimer);
    clearTimeout(this.releaseTimer);
    await this.starting?.catch(() => undefined);
    await Promise.all(this.threads.splice(0).map((t) => t.thread.terminate()));
  }

  /** Threads started and not ended. */
  get threadCount(): number {
    return this.threads.length;
  }

  /**
   * A thread that ended (for whatever reason) is dropped. What it allocated stays in the C
   * allocator's arenas until they are trimmed: trimmed once the ends are over, so that the
   * daemon shrinks back instead of keeping the peak.
   */
  private readonly forget = (ended: WasmThread): void => {
    const at = this.threads.indexOf(ended);
    if (at >= 0) this.threads.splice(at, 1);
    clearTimeout(this.releaseTimer);
    this.releaseTimer = setTimeout(releaseFreeMemory, RELEASE_DELAY_MS).unref();
  };

  /** Ends the threads that hosted nothing for idleMs. */
  private trim(): void {
    const cutoff = Date.now() - this.options.idleMs;
    for (const t of this.threads) if (t.load === 0 && t.idleSince < cutoff) void t.thread.terminate();
  }
}

/** A new thread, once it has loaded node:wasi and waits for jobs; `onExit` is told when it ends. */
async function startThread(onExit: (thread: WasmThread) => void): Promise<WasmThread> {
  const worker = new Worker(WORKER_URL, { stdout: false, stderr: false });
  // Threads never keep the daemon alive on their own: its servers do.
  worker.unref();
  const started = new WasmThread(worker);
  worker.once('exit', () => {
    started.ended();
    onExit(started);
  });
  // An uncaught error ends the thread (its 'exit' follows and ends its instances). Without a
  // listener of its own, it would be thrown in kuasard's main thread and end the daemon.
  worker.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    const onMessage = (message: WorkerMessage) => {
      if (message.type !== 'idle') return;
      cleanup();
      resolve();
    };
    const onExitEarly = (code: number) => {
      cleanup();
      reject(new Error(`wasm worker exited with code ${code} while starting`));
    };
    const cleanup = () => {
      worker.off('message', onMessage);
      worker.off('exit', onExitEarly);
    };
    worker.on('message', onMessage);
    worker.once('exit', onExitEarly);
  });
  return started;
}
