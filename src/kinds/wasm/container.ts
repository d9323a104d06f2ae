// One wasm container: a WebAssembly instance on a pooled worker thread, its guest filesystem
// (the rootfs bound on the container's directory, the spec's mounts inside it) and its stdio.
// Nothing of it outlives the daemon: after a restart the object only releases what is left.
import { closeSync, constants, mkdirSync, openSync, rmdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { exitedNow, type SavedState } from '../../base/model.js';
import type { CgroupMetrics } from '../../base/metrics.js';
import { timed } from '../../base/stages.js';
import { failedPrecondition, unimplemented } from '../../base/errors.js';
import type { StreamRegistry } from '../../base/streams.js';
import { ProcessStdio } from '../../io/process-stdio.js';
import { readBundleSpec, resolveRootfs } from '../../oci/bundle.js';
import type { ContainerContext, KindContainer, KindExec, KindProcess, ProcessEnd } from '../../kind-api/kind.js';
import { closeDescriptorsUnder } from '../../linux/descriptors.js';
import { detachTree, unmountRecursive } from '../../linux/mount.js';
import { lowerLayerFile } from '../../linux/overlay-layers.js';
import { mountGuestFilesystem } from './guest-mounts.js';
import { WasmInstance } from './instance.js';
import { guestFilesystem, wasmLaunch } from './launch.js';
import type { ModuleCache } from './module-cache.js';
import type { WorkerPool } from './worker-pool.js';

/**
 * The pid reported for every wasm container: kuasard's own. There is no process per container,
 * but containerd treats a task whose pid is 0 as gone (Connect after a containerd restart), and
 * kuasard is the process that runs the instance. Nothing signals this pid: Kill comes through
 * the Task API, which ends only the instance.
 */
const INSTANCE_PID = process.pid;

/** What the kind shares with each of its containers. */
export interface WasmEnvironment {
  /** A private directory with a short path, for ProcessStdio. */
  consoleDir: string;
  defaultMemoryLimit: number;
  workers: WorkerPool;
  modules: ModuleCache;
}

interface Running {
  instance: WasmInstance;
  stdio: ProcessStdio;
}

export class WasmContainer implements KindContainer {
  readonly init: KindProcess;
  /** The container's directory, on which its rootfs is mounted: the guest's `/`. */
  private readonly rootfs: string;

  private constructor(
    containersDir: string,
    private readonly context: ContainerContext,
    /** Told once the container is deleted (its pod stops counting it). */
    private readonly onDelete: (container: WasmContainer) => void,
    /** Null for a container of the previous run: its instance ended with it. */
    private readonly running: Running | null,
    exited: Promise<ProcessEnd>,
  ) {
    this.rootfs = join(containersDir, context.record.id);
    this.init = {
      pid: INSTANCE_PID,
      exited,
      resize: async () => undefined,
      // kuasard copies every instance's stdin into a pipe of its own (copyStdin): CloseIO ends that pipe.
      closeStdin: async () => running?.stdio.closeStdin(),
    };
  }

  /** Task Create: the guest filesystem mounted, the module compiled and instantiated (not started); undone when a step fails. */
  static async create(
    env: WasmEnvironment,
    pod: { containersDir: string; streams: StreamRegistry; onDelete: (container: WasmContainer) => void },
    context: ContainerContext,
  ): Promise<WasmContainer> {
    const { containersDir, streams } = pod;
    const { record, log } = context;
    // One directory per container, and nothing in it but the mounts: each directory made and
    // removed costs an inode and a block, a tenth of the Task API's work on an ext4 state directory.
    const rootfs = join(containersDir, record.id);
    let stdio: ProcessStdio | undefined;
    const nullFds: number[] = [];
    try {
      const spec = await timed(log, 'wasm.read-spec', () => readBundleSpec(record.bundle));
      mkdirSync(rootfs, { mode: 0o700 });
      // With no mounts, containerd has prepared the rootfs inside the bundle itself: a bind of it
      // gives the container a mount of its own all the same, to mount into and make read-only.
      const root = record.rootfs.length > 0 ? { mounts: record.rootfs } : { directory: resolveRootfs(record.bundle, spec, 0) };
      await timed(log, 'wasm.mount-guest', () => mountGuestFilesystem(rootfs, root, guestFilesystem(spec, record.bundle)));
      const { modulePath, moduleStats, memoryLimit: specLimit, ...launch } = await wasmLaunch(spec, rootfs);
      const memoryLimit = specLimit ?? env.defaultMemoryLimit;
      const module = await timed(log, 'wasm.compile', () => {
        // Known by the image layer's file when it is one: every container of the image shares it.
        const layerFile = moduleStats && lowerLayerFile(record.rootfs, relative(rootfs, modulePath), moduleStats);
        return env.modules.load(modulePath, memoryLimit, layerFile ?? moduleStats);
      });
      stdio = await timed(log, 'wasm.open-stdio', () =>
        ProcessStdio.open({ stdio: record.stdio, streams, consoleDir: env.consoleDir, log, copyStdin: true }),
      );
      // A slot containerd left empty reads and writes /dev/null: WASI's default would be kuasard's own stdio.
      const fds = stdio.runtime.stdio.map((target, slot) => {
        if (target !== 'ignore') return target;
        const fd = openSync('/dev/null', slot === 0 ? constants.O_RDONLY : constants.O_WRONLY);
        nullFds.push(fd);
        return fd;
      }) as [number, number, number];
      const instance = await timed(log, 'wasm.instantiate', () =>
        WasmInstance.create(env.workers, { ...launch, module, memoryLimit, stdio: fds }),
      );
      const running: Running = { instance, stdio };
      return new WasmContainer(containersDir, context, pod.onDelete, running, WasmContainer.ended(running, rootfs, nullFds, context));
    } catch (err) {
      stdio?.close();
      closeAll(nullFds);
      closeDescriptorsUnder(rootfs);
      await releaseFiles(rootfs, context).catch((e) => log.error({ err: e }, 'cleanup after failed create'));
      throw err;
    }
  }

  /** How the instance ends: its descriptors closed, its output drained, OOM told. */
  private static async ended(running: Running, rootfs: string, nullFds: number[], context: ContainerContext): Promise<ProcessEnd> {
    const end = await running.instance.ended;
    // The instance is over: the descriptors it used can be closed (ProcessStdio's "the process
    // holds its own now" step, which for an instance in our own process comes only at its end),
    // and the output drains. Its thread has closed those node:wasi opened for it, unless the
    // thread itself ended: then they are found by their paths.
    running.stdio.started();
    closeAll(nullFds);
    if (end.descriptorsLeft) closeDescriptorsUnder(rootfs);
    await running.stdio.finish();
    context.log.info({ exitStatus: end.exitStatus, signal: end.signal, outOfMemory: end.outOfMemory }, 'wasm instance ended');
    return { ...exitedNow(end.exitStatus), oomKilled: end.outOfMemory };
  }

  /** A container of the previous run: its instance ended with that daemon; only its files are left to release. */
  static restore(pod: { containersDir: string; onDelete: (container: WasmContainer) => void }, context: ContainerContext): WasmContainer {
    return new WasmContainer(pod.containersDir, context, pod.onDelete, null, new Promise<never>(() => undefined));
  }

  state(): SavedState | null {
    return null;
  }

  /** Bytes of linear memory the instance holds while it runs. */
  memoryInUse(): number {
    return this.running?.instance.isRunning ? this.running.instance.memoryInUse : 0;
  }

  async start(): Promise<void> {
    this.live().instance.start();
  }

  async kill(signal: number): Promise<void> {
    const { instance, stdio } = this.live();
    if (signal === 0) return;
    instance.kill(signal);
    // A module blocked reading its stdin wakes to end-of-file, and finds itself killed.
    stdio.abortStdin();
  }

  async delete(): Promise<void> {
    if (this.running) {
      this.running.instance.kill(9);
      await this.running.instance.ended;
      this.running.stdio.close();
    }
    await releaseFiles(this.rootfs, this.context);
    this.onDelete(this);
  }

  async pids(): Promise<number[]> {
    return this.running?.instance.isRunning ? [INSTANCE_PID] : [];
  }

  async stats(): Promise<CgroupMetrics> {
    return memoryMetrics(this.memoryInUse());
  }

  // The kind declares none of these (see its capabilities): the engine refuses them before they get here.
  async update(): Promise<void> {
    throw unimplemented('update');
  }

  async pause(): Promise<void> {
    throw unimplemented('pause');
  }

  async resume(): Promise<void> {
    throw unimplemented('resume');
  }

  async exec(): Promise<KindExec> {
    throw unimplemented('exec');
  }

  async restoreExec(): Promise<KindExec> {
    throw unimplemented('exec');
  }

  private live(): Running {
    if (!this.running) throw failedPrecondition(`container ${this.context.record.id}: its wasm instance ended with the previous kuasard`);
    return this.running;
  }
}

/** Figures of memory only: what a wasm container or pod has to report. */
export function memoryMetrics(bytes: number): CgroupMetrics {
  return { version: 2, v2: { memory: { usage: BigInt(bytes) } } };
}

function closeAll(fds: number[]): void {
  for (const fd of fds.splice(0)) closeSync(fd);
}

/**
 * Takes the guest's file system away and removes the container's directory. Every mount of the
 * guest lies on or below `rootfs` (guest-mounts.ts) and nothing holds its files open any more (the
 * instance's thread closed them), so one detach takes the whole tree, without reading the mount
 * table (whose size grows with every container the host runs). The directory is then empty, and
 * rmdir removes it (synchronously: one directory of kuasard's state directory, microseconds), which
 * never deletes what a mount still showing there would hold. Anything else found (a directory of
 * an older kuasard, whose rootfs was a directory inside it) takes the careful way: each mount found
 * in the table unmounted, a check that none is left, then the recursive removal.
 */
async function releaseFiles(rootfs: string, context: ContainerContext): Promise<void> {
  await timed(context.log, 'wasm.unmount-rootfs', async () => {
    detachTree(rootfs);
    try {
      rmdirIfThere(rootfs);
      return;
    } catch (err) {
      context.log.warn({ err }, "the container's directory holds more than its detached rootfs; unmounting and removing it all");
    }
    await unmountRecursive(rootfs);
    await rm(rootfs, { recursive: true, force: true });
  });
}

function rmdirIfThere(dir: string): void {
  try {
    rmdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
