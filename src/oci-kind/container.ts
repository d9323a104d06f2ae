// What a container is to every kind that runs containers with an OCI runtime CLI (runc on the
// host, runsc inside a gVisor sandbox): a directory in its pod's, a bundle there (config.json
// bent to the pod by the kind, the rootfs mounted beside it), an init the runtime creates with
// its stdio, execs started through `exec --detach`, and the runtime's commands for the rest.
// What differs between kinds is a few hooks: how the spec joins the pod, how the init's end is
// learned, what follows it, and where the figures come from.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Code, failedPrecondition, RuntimeError } from '../base/errors.js';
import type { CgroupMetrics } from '../base/metrics.js';
import type { ExitInfo, SavedState } from '../base/model.js';
import { timed } from '../base/stages.js';
import type { ContainerContext, ExecContext, KindContainer, KindExec, ProcessEnd } from '../kind-api/kind.js';
import { mountAll, unmountRecursive } from '../linux/mount.js';
import type { Reaper } from '../linux/reaper.js';
import { readBundleSpec, resolveRootfs } from '../oci/bundle.js';
import type { OciRuntime } from '../oci/runtime.js';
import type { Spec } from '../oci/spec.js';
import { OciProcess, type LaunchContext } from './process.js';

const { SIGKILL } = constants.signals;

/** What a container needs of its pod. */
export interface OciPodView {
  runtime: OciRuntime;
  /** Reaps the processes that are kuasard's children: every exec's (runc's, or runsc's waiter). */
  reaper: Reaper;
  launch: Omit<LaunchContext, 'log'>;
  /** Where the pod keeps its containers' directories. */
  containersDir: string;
}

/** A runtime failure that says the container is gone already. */
export const isGone = (err: unknown): boolean => err instanceof RuntimeError && err.code === Code.NotFound;

/** The files of a container inside its pod's directory. */
export function containerDirs(containersDir: string, id: string) {
  const dir = join(containersDir, id);
  return { dir, rootfs: join(dir, 'rootfs'), pidFile: join(dir, 'init.pid') };
}

export abstract class OciContainer implements KindContainer {
  protected readonly dirs: ReturnType<typeof containerDirs>;
  protected readonly log: Logger;
  protected initProcess: OciProcess | null = null;
  /** The runtime gives the init its stdio when it starts it, not when it creates it (runsc's containers of a sandbox). */
  protected readonly stdioAtStart: boolean = false;

  protected constructor(
    protected readonly pod: OciPodView,
    protected readonly context: ContainerContext,
    /** Names this kind's stages in the log (`<prefix>.mount-rootfs`). */
    private readonly stagePrefix: string,
  ) {
    this.dirs = containerDirs(pod.containersDir, context.record.id);
    this.log = context.log;
  }

  protected get id(): string {
    return this.context.record.id;
  }

  /** The container's spec as the runtime is to run it: CRI's, rooted at `rootPath` and joined to the pod. */
  protected abstract podSpec(cri: Spec, rootPath: string): Spec;
  /** Follows the init (pid as the runtime wrote it) until it ends. */
  protected abstract watchInit(pid: number): Promise<ExitInfo>;
  /** What follows the init's end, before its exit is reported (its OOM kill, say). */
  protected abstract afterInitExit(exit: ExitInfo): Promise<ProcessEnd>;
  /** Called once the init is created from `spec`: the kind records what it will need again. */
  protected abstract created(spec: Spec, initPid: number): void | Promise<void>;
  abstract state(): SavedState;
  abstract stats(): Promise<CgroupMetrics>;

  /** Task Create: the bundle written, the rootfs mounted, the init created by the runtime; undone when a step fails. */
  protected async createInit(): Promise<void> {
    try {
      await this.createInitSteps();
    } catch (err) {
      this.log.warn({ err }, 'task create failed; releasing what it took');
      await this.delete().catch((e) => this.log.error({ err: e }, 'cleanup after failed create'));
      throw err;
    }
  }

  private async createInitSteps(): Promise<void> {
    const { record } = this.context;
    const { dir, rootfs, pidFile } = this.dirs;
    await mkdir(rootfs, { recursive: true, mode: 0o700 });
    const cri = await readBundleSpec(record.bundle);
    if (record.rootfs.length > 0) await timed(this.log, `${this.stagePrefix}.mount-rootfs`, () => mountAll(record.rootfs, rootfs));
    const spec = this.podSpec(cri, resolveRootfs(record.bundle, cri, record.rootfs.length, rootfs));
    await writeFile(join(dir, 'config.json'), JSON.stringify(this.pod.runtime.specForRuntime(spec)));
    this.initProcess = await OciProcess.launch(
      { ...this.pod.launch, log: this.log },
      record.stdio,
      (io) => this.pod.runtime.create(record.id, dir, { pidFile, ...io, log: this.log }),
      (pid) => this.watchInit(pid),
      (exit) => this.afterInitExit(exit),
      { handOverLater: this.stdioAtStart },
    );
    await this.created(spec, this.initProcess.pid);
  }

  get init(): OciProcess {
    if (!this.initProcess) throw failedPrecondition(`container ${this.id} has no init process`);
    return this.initProcess;
  }

  async start(): Promise<void> {
    if (!this.stdioAtStart) {
      await this.pod.runtime.start(this.id, { log: this.log });
      return;
    }
    await this.init.handOver((io) => this.pod.runtime.start(this.id, { stdio: io.stdio, log: this.log }));
  }

  async kill(signal: number, all: boolean): Promise<void> {
    await this.pod.runtime.kill(this.id, signal, { all });
    // A frozen process takes no signal until it is thawed (cgroup v1's freezer). runc thaws a
    // paused container it kills with SIGKILL; crun does not, and its container would never end.
    if (signal === SIGKILL && this.context.record.status === 'paused') {
      await this.pod.runtime.resume(this.id, { log: this.log }).catch((err) => this.log.debug({ err }, 'thawing the killed container'));
    }
  }

  async delete(): Promise<void> {
    this.initProcess?.release();
    // Gone already: the daemon died after the runtime deleted it, or before it created it.
    await this.pod.runtime.delete(this.id, { force: true, log: this.log }).catch((err: unknown) => {
      if (!isGone(err)) throw err;
    });
    await timed(this.log, `${this.stagePrefix}.unmount-rootfs`, () => unmountRecursive(this.dirs.rootfs));
    await rm(this.dirs.dir, { recursive: true, force: true });
  }

  pids(): Promise<number[]> {
    return this.pod.runtime.ps(this.id);
  }

  async update(resources: Record<string, unknown>): Promise<void> {
    await this.pod.runtime.updateResources(this.id, resources, this.dirs.dir, { log: this.log });
  }

  async pause(): Promise<void> {
    await this.pod.runtime.pause(this.id, { log: this.log });
  }

  async resume(): Promise<void> {
    await this.pod.runtime.resume(this.id, { log: this.log });
  }

  /**
   * `exec --detach` of an exec process; its files live in the container's directory. The pid the
   * runtime writes is a child of kuasard either way: runc's process itself, or runsc's host-side
   * `runsc exec`, which exits with the process's status but does not pass signals on to it (so a
   * kill of a runsc exec ends only that waiter: a known gap, see the README).
   */
  async exec(exec: ExecContext): Promise<KindExec> {
    const { record } = exec;
    const files = execFiles(this.dirs.dir, record.id);
    // The terminal flag of the request decides how stdio is set up; the runtime must agree.
    await writeFile(files.process, JSON.stringify({ ...record.spec, terminal: record.stdio.terminal }));
    const process = await OciProcess.launch(
      { ...this.pod.launch, log: exec.log },
      record.stdio,
      (io) => this.pod.runtime.exec(this.id, { pidFile: files.pid, processFile: files.process, ...io, log: exec.log }),
      (pid) => this.pod.reaper.watch(pid),
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

  /** Never called: these kinds declare that execs do not survive a restart (their stdio lived in the daemon). */
  async restoreExec(): Promise<KindExec> {
    throw failedPrecondition(`container ${this.id}: execs do not survive a kuasard restart`);
  }
}

function execFiles(dir: string, execId: string) {
  return { process: join(dir, `exec-${execId}.json`), pid: join(dir, `exec-${execId}.pid`) };
}

async function removeExecFiles(files: ReturnType<typeof execFiles>): Promise<void> {
  await Promise.all([rm(files.process, { force: true }), rm(files.pid, { force: true })]);
}
