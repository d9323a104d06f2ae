// The wasm kind: containers are WebAssembly modules (WASI preview 1) run by the daemon itself,
// each instance on a worker thread of its own while it lives (worker-pool.ts lends them out and
// takes them back), its module compiled once for all its instances (module-cache.ts). A pod has no namespaces or cgroups of its own in
// this first version: its isolation is WebAssembly's (a module reaches only its linear memory
// and, through WASI, its preopened directories and stdio). No OS process exists per container.
import { closeSync, constants, openSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { failedPrecondition } from '../../base/errors.js';
import type { CreatedProcess, SandboxContext, SandboxKind, TaskDriver } from '../../kind-api/kind.js';
import type { CgroupMetrics } from '../../base/metrics.js';
import { exitedNow, UNKNOWN_EXIT_STATUS, type ContainerRecord, type ExitInfo, type Platform } from '../../base/model.js';
import { timed } from '../../base/stages.js';
import { ProcessStdio } from '../../io/process-stdio.js';
import { closeDescriptorsUnder } from '../../linux/descriptors.js';
import { unmountRecursive } from '../../linux/mount.js';
import { hostPlatform } from '../../linux/platform.js';
import { WasmInstance } from './instance.js';
import { ModuleCache } from './module-cache.js';
import { WorkerPool } from './worker-pool.js';
import { mountGuestFilesystem } from './guest-mounts.js';
import { guestFilesystem, wasmLaunch, type WasmSpec } from './launch.js';

export interface WasmKindOptions {
  /** The kind's state directory (`<state_dir>/wasm`). */
  kindDir: string;
  /** The memory limit (bytes) of a container whose spec sets none. */
  defaultMemoryLimit: number;
  /** Worker threads kept started and idle, ready for the next container. */
  warmWorkers: number;
}

/** Idle workers beyond the warm ones end after this long unused. */
const IDLE_WORKER_MS = 30_000;
/** The most module bytes kept compiled for later containers. */
const MODULE_CACHE_BYTES = 64 * 1024 * 1024;

/**
 * The pid reported for every wasm container: kuasard's own. There is no process per container,
 * but containerd treats a task whose pid is 0 as gone (Connect after a containerd restart), and
 * kuasard is the process that runs the instance. Nothing signals this pid: Kill comes through
 * the Task API, which ends only the instance.
 */
const INSTANCE_PID = process.pid;

const unsupported = (what: string) => failedPrecondition(`${what} is not supported by the wasm kind`);

export class WasmKind implements SandboxKind {
  readonly name = 'wasm';
  readonly tasks: WasmTasks;
  private readonly workers: WorkerPool;

  constructor(private readonly options: WasmKindOptions) {
    this.workers = new WorkerPool({ warm: options.warmWorkers, idleMs: IDLE_WORKER_MS });
    this.tasks = new WasmTasks({
      consoleDir: options.kindDir,
      defaultMemoryLimit: options.defaultMemoryLimit,
      workers: this.workers,
      modules: new ModuleCache(MODULE_CACHE_BYTES),
    });
  }

  async init(): Promise<void> {
    await mkdir(this.options.kindDir, { recursive: true, mode: 0o700 });
    this.workers.warmUp();
  }

  platform(): Platform {
    return hostPlatform();
  }

  async prepare(sandbox: SandboxContext): Promise<void> {
    await mkdir(join(sandbox.dir, 'containers'), { recursive: true });
  }

  async start(): Promise<{ pid: number }> {
    return { pid: 0 };
  }

  async stop(): Promise<void> {
    // Core has stopped every container; the pod holds nothing else that runs.
  }

  /** The pod's counters: the linear memory of its running instances. */
  async metrics(sandbox: SandboxContext): Promise<CgroupMetrics> {
    const usage = sandbox.record.containers.reduce((sum, c) => sum + this.tasks.memoryOf(sandbox, c), 0);
    return memoryMetrics(usage);
  }

  async recover(): Promise<void> {
    // Nothing of a pod outlives the daemon but its directory; its containers are reported ended.
  }

  async destroy(sandbox: SandboxContext): Promise<void> {
    await unmountRecursive(sandbox.dir);
  }
}

interface RunningInstance {
  instance: WasmInstance;
  stdio: ProcessStdio;
}

interface WasmTasksOptions {
  /** A private directory with a short path, for ProcessStdio. */
  consoleDir: string;
  defaultMemoryLimit: number;
  workers: WorkerPool;
  modules: ModuleCache;
}

class WasmTasks implements TaskDriver {
  private readonly instances = new Map<string, RunningInstance>();

  constructor(private readonly options: WasmTasksOptions) {}

  private dirs(sandbox: SandboxContext, container: ContainerRecord) {
    const dir = join(sandbox.dir, 'containers', container.id);
    return { dir, rootfs: join(dir, 'rootfs') };
  }

  private key(sandbox: SandboxContext, container: ContainerRecord): string {
    return `${sandbox.record.id}/${container.id}`;
  }

  memoryOf(sandbox: SandboxContext, container: ContainerRecord): number {
    const running = this.instances.get(this.key(sandbox, container));
    return running?.instance.isRunning ? running.instance.memoryInUse : 0;
  }

  async create(sandbox: SandboxContext, container: ContainerRecord): Promise<CreatedProcess> {
    const log = sandbox.log.child({ container: container.id });
    if (container.stdio.terminal) throw unsupported('a terminal');
    const spec = JSON.parse(await readFile(join(container.bundle, 'config.json'), 'utf8')) as WasmSpec;
    const { rootfs } = this.dirs(sandbox, container);
    await mkdir(rootfs, { recursive: true, mode: 0o700 });
    // With no mounts, containerd has prepared the rootfs inside the bundle itself: a bind of it
    // gives the container a mount of its own all the same, to mount into and make read-only.
    const root = container.rootfs.length > 0 ? { mounts: container.rootfs } : { directory: join(container.bundle, 'rootfs') };
    // A failure from here on is undone by Delete (core runs it after a failed Create).
    await timed(log, 'wasm.mount-guest', () => mountGuestFilesystem(rootfs, root, guestFilesystem(spec, container.bundle)));
    const { modulePath, memoryLimit: specLimit, ...launch } = await wasmLaunch(spec, rootfs);
    const memoryLimit = specLimit ?? this.options.defaultMemoryLimit;
    const module = await timed(log, 'wasm.compile', () => this.options.modules.load(modulePath, memoryLimit));

    const stdio = await ProcessStdio.open({
      stdio: container.stdio,
      streams: sandbox.streams,
      consoleDir: this.options.consoleDir,
      log,
      copyStdin: true,
    });
    // A slot containerd left empty reads and writes /dev/null: WASI's default would be kuasard's own stdio.
    const nullFds: number[] = [];
    const fds = stdio.runtime.stdio.map((target, slot) => {
      if (target !== 'ignore') return target;
      const fd = openSync('/dev/null', slot === 0 ? constants.O_RDONLY : constants.O_WRONLY);
      nullFds.push(fd);
      return fd;
    }) as [number, number, number];
    const closeNullFds = () => {
      for (const fd of nullFds.splice(0)) closeSync(fd);
    };

    let instance: WasmInstance;
    try {
      instance = await timed(log, 'wasm.instantiate', () =>
        WasmInstance.create(this.options.workers, { ...launch, module, memoryLimit, stdio: fds }),
      );
    } catch (err) {
      stdio.close();
      closeNullFds();
      closeDescriptorsUnder(rootfs);
      throw err;
    }
    const running: RunningInstance = { instance, stdio };
    this.instances.set(this.key(sandbox, container), running);
    const exited = instance.ended.then(async (end): Promise<ExitInfo> => {
      // The instance is over: the descriptors it used can be closed (ProcessStdio's "the process
      // holds its own now" step, which for an instance in our own process comes only at its end),
      // with those node:wasi opened for it and never closes, and the output drains.
      stdio.started();
      closeNullFds();
      closeDescriptorsUnder(rootfs);
      await stdio.finish();
      log.info({ exitStatus: end.exitStatus, signal: end.signal, outOfMemory: end.outOfMemory }, 'wasm instance ended');
      // Published before the exit, so that CRI reports the container OOMKilled.
      if (end.outOfMemory) sandbox.reportOom(container.id);
      return exitedNow(end.exitStatus);
    });
    return { pid: INSTANCE_PID, exited };
  }

  async start(sandbox: SandboxContext, container: ContainerRecord): Promise<void> {
    this.running(sandbox, container).instance.start();
  }

  async kill(sandbox: SandboxContext, container: ContainerRecord, signal: number): Promise<void> {
    const { instance, stdio } = this.running(sandbox, container);
    if (signal === 0) return;
    instance.kill(signal);
    // A module blocked reading its stdin wakes to end-of-file, and finds itself killed.
    stdio.abortStdin();
  }

  async delete(sandbox: SandboxContext, container: ContainerRecord): Promise<void> {
    const key = this.key(sandbox, container);
    const running = this.instances.get(key);
    if (running) {
      running.instance.kill(9);
      await running.instance.ended;
      running.stdio.close();
      this.instances.delete(key);
    }
    const { dir, rootfs } = this.dirs(sandbox, container);
    await timed(sandbox.log.child({ container: container.id }), 'wasm.unmount-rootfs', () => unmountRecursive(rootfs));
    await rm(dir, { recursive: true, force: true });
  }

  async pids(sandbox: SandboxContext, container: ContainerRecord): Promise<number[]> {
    return this.instances.get(this.key(sandbox, container))?.instance.isRunning ? [INSTANCE_PID] : [];
  }

  async stats(sandbox: SandboxContext, container: ContainerRecord): Promise<CgroupMetrics> {
    return memoryMetrics(this.memoryOf(sandbox, container));
  }

  async update(): Promise<void> {
    throw unsupported('changing the resources of a running container');
  }

  async pause(): Promise<void> {
    throw unsupported('pause');
  }

  async resume(): Promise<void> {
    throw unsupported('resume');
  }

  async startExec(): Promise<CreatedProcess> {
    throw unsupported('exec');
  }

  async killExec(): Promise<void> {
    throw unsupported('exec');
  }

  async deleteExec(): Promise<void> {
    // No exec is ever started, so there is nothing to release.
  }

  async resizePty(): Promise<void> {
    // No wasm container has a terminal.
  }

  async closeStdin(sandbox: SandboxContext, container: ContainerRecord): Promise<void> {
    // kuasard copies every instance's stdin into a pipe of its own (copyStdin): CloseIO ends that pipe.
    this.instances.get(this.key(sandbox, container))?.stdio.closeStdin();
  }

  async reattach(sandbox: SandboxContext, container: ContainerRecord): Promise<ExitInfo> {
    // Instances run inside kuasard's own threads: none survives a daemon restart.
    // Its log cannot say so: containerd stopped reading its output when the old daemon's
    // descriptors closed. The daemon's log does.
    sandbox.log.warn(
      { container: container.id },
      'wasm instance ended with the previous kuasard (the daemon restarted); reporting exit status 255',
    );
    return exitedNow(UNKNOWN_EXIT_STATUS);
  }

  private running(sandbox: SandboxContext, container: ContainerRecord): RunningInstance {
    const running = this.instances.get(this.key(sandbox, container));
    if (!running) throw failedPrecondition(`container ${container.id}: its wasm instance is gone (kuasard restarted?)`);
    return running;
  }
}

function memoryMetrics(bytes: number): CgroupMetrics {
  return { version: 2, v2: { memory: { usage: BigInt(bytes) } } };
}
