// One container of a runc pod: its bundle for the OCI runtime (config.json joined to the pod's
// namespaces and files), its rootfs mounts, its init and its execs. What it saves is what the
// next run needs to find it again: its init's start time (a pid alone may name another process
// by then) and its cgroup (for stats and the OOM count).
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { Code, failedPrecondition, RuntimeError } from '../../base/errors.js';
import type { CgroupMetrics } from '../../base/metrics.js';
import { exitedNow, UNKNOWN_EXIT_STATUS, type ExitInfo, type SavedState } from '../../base/model.js';
import { timed } from '../../base/stages.js';
import type { ContainerContext, ExecContext, KindContainer, KindExec, ProcessEnd } from '../../kind-api/kind.js';
import { stateCodec } from '../../kind-api/state.js';
import { readCgroupMetrics, readOomKills } from '../../linux/cgroup-stats.js';
import { mountAll, unmountRecursive } from '../../linux/mount.js';
import { isSameProcessRunning, readProcStat } from '../../linux/proc.js';
import type { OciRuntime } from '../../oci/runtime.js';
import { readBundleSpec, resolveRootfs } from '../../oci/bundle.js';
import { cgroupsPathOf, hostCgroupLayout } from './cgroups.js';
import { podContainerSpec, type PodLayout } from './container-spec.js';
import { RuncProcess, type LaunchContext } from './process.js';

interface RuncContainerState {
  /** The init's start time (/proc/<pid>/stat), null when it could not be read. */
  initStartTime: string | null;
  /** The container's cgroups path, as given to the runtime. */
  cgroupsPath: string;
}

const containerState = stateCodec<RuncContainerState>(
  1,
  z.object({ initStartTime: z.string().regex(/^\d+$/).nullable(), cgroupsPath: z.string() }),
);

/** What a container needs of its pod. */
export interface RuncPodView {
  runtime: OciRuntime;
  launch: Omit<LaunchContext, 'log'>;
  /** Where the pod keeps its containers' directories. */
  containersDir: string;
  /** The pod's namespaces and files, for the container's spec (throws when the pod cannot take containers). */
  layout(): PodLayout;
  /** 'container': each container is the init of its own PID namespace. */
  pidMode: 'pod' | 'container' | 'node';
}

/** A runtime failure that says the container is gone already. */
export const isGone = (err: unknown): boolean => err instanceof RuntimeError && err.code === Code.NotFound;

/** The files of a container inside its pod's directory. */
export function containerDirs(containersDir: string, id: string) {
  const dir = join(containersDir, id);
  return { dir, rootfs: join(dir, 'rootfs'), pidFile: join(dir, 'init.pid') };
}

export class RuncContainer implements KindContainer {
  private readonly dirs: ReturnType<typeof containerDirs>;
  private readonly log: Logger;

  private constructor(
    private readonly pod: RuncPodView,
    private readonly context: ContainerContext,
    private saved: RuncContainerState,
    private initProcess: RuncProcess | null,
  ) {
    this.dirs = containerDirs(pod.containersDir, context.record.id);
    this.log = context.log;
  }

  private get id(): string {
    return this.context.record.id;
  }

  /** Task Create: the bundle written, the rootfs mounted, the init created by `runc create`; undone when a step fails. */
  static async create(pod: RuncPodView, context: ContainerContext): Promise<RuncContainer> {
    const { record } = context;
    const container = new RuncContainer(pod, context, { initStartTime: null, cgroupsPath: record.id }, null);
    try {
      await container.createInit();
    } catch (err) {
      context.log.warn({ err }, 'task create failed; releasing what it took');
      await container.delete().catch((e) => context.log.error({ err: e }, 'cleanup after failed create'));
      throw err;
    }
    return container;
  }

  private async createInit(): Promise<void> {
    const { record } = this.context;
    const { dir, rootfs, pidFile } = this.dirs;
    await mkdir(rootfs, { recursive: true, mode: 0o700 });
    const spec = await readBundleSpec(record.bundle);
    if (record.rootfs.length > 0) await timed(this.log, 'runc.mount-rootfs', () => mountAll(record.rootfs, rootfs));
    const rootPath = resolveRootfs(record.bundle, spec, record.rootfs.length, rootfs);
    const runcSpec = podContainerSpec(spec, rootPath, this.pod.layout());
    await writeFile(join(dir, 'config.json'), JSON.stringify(runcSpec));
    this.saved.cgroupsPath = cgroupsPathOf(runcSpec, record.id);
    this.initProcess = await RuncProcess.launch(
      { ...this.pod.launch, log: this.log },
      record.stdio,
      (io) => this.pod.runtime.create(record.id, dir, { pidFile, ...io, log: this.log }),
      (exit) => this.afterInitExit(exit),
    );
    this.saved.initStartTime = readProcStat(this.initProcess.pid)?.startTime ?? null;
  }

  /**
   * After a restart: the container from its saved state. Its init is no longer our child: we
   * learn when it ends, not how (255). One that ended while kuasard was down is reported so.
   */
  static restore(pod: RuncPodView, context: ContainerContext, saved: SavedState | null): RuncContainer {
    const state = containerState.load(saved, `container ${context.record.id}`);
    const container = new RuncContainer(pod, context, state, null);
    const { pid, status } = context.record;
    let ended: Promise<ExitInfo>;
    if (status === 'stopped') {
      // Its exit is known already; nothing follows it.
      ended = new Promise<never>(() => undefined);
    } else if (!state.initStartTime || !isSameProcessRunning(pid, state.initStartTime)) {
      context.log.warn('container exited while kuasard was down; its exit status is lost, reporting 255');
      ended = Promise.resolve(exitedNow(UNKNOWN_EXIT_STATUS));
    } else {
      ended = pod.launch.reaper.watchForeign(pid).then((exit) => {
        context.log.warn('container exited after a kuasard restart; its exit status cannot be known, reporting 255');
        return exit;
      });
    }
    container.initProcess = RuncProcess.adopted(pid, ended, (exit) => container.afterInitExit(exit));
    return container;
  }

  get init(): RuncProcess {
    if (!this.initProcess) throw failedPrecondition(`container ${this.id} has no init process`);
    return this.initProcess;
  }

  state(): SavedState {
    return containerState.save(this.saved);
  }

  /** What follows the end of a container's init, before the exit is reported. */
  private async afterInitExit(exit: ExitInfo): Promise<ProcessEnd> {
    // Only the end of a namespace's init takes its other processes along. A container in the
    // pod's (or the node's) PID namespace would leave them running: as runc's shim, end them.
    if (this.pod.pidMode !== 'container') {
      await this.pod.runtime.kill(this.id, 9, { all: true }).catch((err) => this.log.debug({ err }, 'killing what the init left'));
    }
    // The cgroup outlives the init until Delete, and counts every OOM kill in it: a container
    // that met its memory limit is reported, before its exit, as containerd's shims do.
    let oomKilled = false;
    try {
      const kills = await readOomKills(this.saved.cgroupsPath, await hostCgroupLayout());
      oomKilled = kills !== undefined && kills > 0n;
    } catch (err) {
      this.log.warn({ err }, "could not read the container's OOM count");
    }
    return { ...exit, oomKilled };
  }

  async start(): Promise<void> {
    await this.pod.runtime.start(this.id, { log: this.log });
  }

  async kill(signal: number, all: boolean): Promise<void> {
    await this.pod.runtime.kill(this.id, signal, { all });
  }

  async delete(): Promise<void> {
    this.initProcess?.release();
    // Gone already: the daemon died after runc deleted it, or before runc created it.
    await this.pod.runtime.delete(this.id, { force: true, log: this.log }).catch((err: unknown) => {
      if (!isGone(err)) throw err;
    });
    await timed(this.log, 'runc.unmount-rootfs', () => unmountRecursive(this.dirs.rootfs));
    await rm(this.dirs.dir, { recursive: true, force: true });
  }

  pids(): Promise<number[]> {
    return this.pod.runtime.ps(this.id);
  }

  async stats(): Promise<CgroupMetrics> {
    return readCgroupMetrics(this.saved.cgroupsPath, await hostCgroupLayout());
  }

  async update(resources: Record<string, unknown>): Promise<void> {
    const file = join(this.dirs.dir, 'resources-update.json');
    await writeFile(file, JSON.stringify(resources));
    try {
      await this.pod.runtime.update(this.id, file, { log: this.log });
    } finally {
      await rm(file, { force: true });
    }
  }

  async pause(): Promise<void> {
    await this.pod.runtime.pause(this.id, { log: this.log });
  }

  async resume(): Promise<void> {
    await this.pod.runtime.resume(this.id, { log: this.log });
  }

  /** `runc exec --detach` of an exec process; its files live in the container's directory. */
  async exec(exec: ExecContext): Promise<KindExec> {
    const { record } = exec;
    const files = execFiles(this.dirs.dir, record.id);
    // The terminal flag of the request decides how stdio is set up; the runtime must agree.
    await writeFile(files.process, JSON.stringify({ ...record.spec, terminal: record.stdio.terminal }));
    const process = await RuncProcess.launch(
      { ...this.pod.launch, log: exec.log },
      record.stdio,
      (io) => this.pod.runtime.exec(this.id, { pidFile: files.pid, processFile: files.process, ...io, log: exec.log }),
      async (exit) => ({ ...exit, oomKilled: false }),
    ).catch(async (err: unknown) => {
      await removeExecFiles(files);
      throw err;
    });
    return {
      pid: process.pid,
      exited: process.exited,
      kill: (signal) => process.kill(signal),
      resize: (size) => process.resize(size),
      closeStdin: () => process.closeStdin(),
      release: async () => {
        process.release();
        await removeExecFiles(files);
      },
      state: () => null,
    };
  }

  /** Never called: the kind declares that execs do not survive a restart (their stdio lived in the daemon). */
  async restoreExec(): Promise<KindExec> {
    throw failedPrecondition(`container ${this.id}: runc execs do not survive a kuasard restart`);
  }
}

function execFiles(dir: string, execId: string) {
  return { process: join(dir, `exec-${execId}.json`), pid: join(dir, `exec-${execId}.pid`) };
}

async function removeExecFiles(files: ReturnType<typeof execFiles>): Promise<void> {
  await Promise.all([rm(files.process, { force: true }), rm(files.pid, { force: true })]);
}
