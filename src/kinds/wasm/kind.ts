// The wasm kind: containers are WebAssembly modules (WASI preview 1) run by the daemon itself,
// many instances on each of a few worker threads (worker-pool.ts), taking turns (every module is
// made suspendable first: rewrite.ts), its module compiled once for all its instances (module-cache.ts). A pod has
// no namespaces or cgroups of its own in this first version: its isolation is WebAssembly's (a
// module reaches only its linear memory and, through WASI, its preopened directories and stdio).
// No OS process exists per container.
import { mkdir } from 'node:fs/promises';
import type { Platform } from '../../base/model.js';
import type { SandboxContext, SandboxKind } from '../../kind-api/kind.js';
import { WASM_CAPABILITIES } from './capabilities.js';
import { unmountRecursive } from '../../linux/mount.js';
import { hostPlatform } from '../../linux/platform.js';
import type { WasmEnvironment } from './container.js';
import { ModuleCache } from './module-cache.js';
import { Rewriter } from './rewriter.js';
import { WasmSandbox } from './sandbox.js';
import { WorkerPool } from './worker-pool.js';

export interface WasmKindOptions {
  /** The kind's state directory (`<state_dir>/wasm`). */
  kindDir: string;
  /** The memory limit (bytes) of a container whose spec sets none. */
  defaultMemoryLimit: number;
  /** Worker threads that share the instances. */
  workerThreads: number;
  /** Where suspendable modules are kept (rewriter.ts). */
  moduleCacheDir: string;
}

/**
 * A worker thread that hosted no instance for this long ends, and the next container starts one
 * again (it waits tens of milliseconds for it, once). Half a minute outlasts a burst of starts (a
 * rollout, a batch of jobs) with the threads kept warm, and then gives their memory (7-9 MiB each)
 * back; a container that starts now and then, such as a CronJob's every minute, pays the thread's
 * start each time, which is small beside its pod's own start.
 */
const IDLE_WORKER_MS = 30_000;
/** The most module bytes kept compiled for later containers. */
const MODULE_CACHE_BYTES = 64 * 1024 * 1024;

export class WasmKind implements SandboxKind {
  readonly name = 'wasm';
  readonly capabilities = WASM_CAPABILITIES;
  private readonly workers: WorkerPool;
  private readonly env: WasmEnvironment;

  constructor(private readonly options: WasmKindOptions) {
    this.workers = new WorkerPool({ threads: options.workerThreads, idleMs: IDLE_WORKER_MS });
    this.env = {
      consoleDir: options.kindDir,
      defaultMemoryLimit: options.defaultMemoryLimit,
      workers: this.workers,
      modules: new ModuleCache(MODULE_CACHE_BYTES, new Rewriter(options.moduleCacheDir)),
    };
  }

  async init(): Promise<void> {
    // The worker threads wait for the first container (worker-pool.ts): a node may never run one.
    await mkdir(this.options.kindDir, { recursive: true, mode: 0o700 });
  }

  platform(): Platform {
    return hostPlatform();
  }

  createSandbox(sandbox: SandboxContext): Promise<WasmSandbox> {
    return WasmSandbox.create(this.env, sandbox);
  }

  async restoreSandbox(sandbox: SandboxContext): Promise<WasmSandbox> {
    // Nothing of a pod outlives the daemon but its directory; its containers are reported ended.
    return new WasmSandbox(this.env, sandbox);
  }

  async destroyLost(sandbox: SandboxContext): Promise<void> {
    await unmountRecursive(sandbox.dir);
  }
}
