// One container of an appkernel pod, run by runsc inside the pod's gVisor sandbox. Its init is no
// process of the host: runsc's `wait` tells its exit, with its real status, also to a kuasard
// that restarted meanwhile (the sandbox keeps it). Its figures are the sandbox kernel's own
// accounting of the container, read through `runsc events --stats`.
import * as check from '../../base/schema.js';
import type { CgroupMetrics } from '../../base/metrics.js';
import { exitedNow, UNKNOWN_EXIT_STATUS, type ExitInfo, type SavedState } from '../../base/model.js';
import type { ContainerContext, ProcessEnd } from '../../kind-api/kind.js';
import { stateCodec } from '../../kind-api/state.js';
import { oomKilledIn } from '../../linux/cgroup-stats.js';
import { OciContainer, type OciPodView } from '../../oci-kind/container.js';
import { OciProcess } from '../../oci-kind/process.js';
import type { ExitSource } from '../../oci/exit-source.js';
import { ContainerStatsMetrics } from '../../oci/stats-metrics.js';
import { hostCgroupLayout, removeCgroup } from '../../linux/cgroups.js';
import { cgroupsPathOf, type Spec } from '../../oci/spec.js';
import { sandboxContainerSpec, type SandboxLayout } from './container-spec.js';

/** A promise and the function that settles it. */
function gate(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

interface AppkernelContainerState {
  /**
   * The cgroups path CRI gave the container. runsc makes that cgroup but runs nothing in it (the
   * container's processes live in the sandbox's), and leaves it behind at delete: kuasard removes it.
   */
  cgroupsPath: string | null;
}

/** runsc keeps the rest in its root. */
const containerState = stateCodec<AppkernelContainerState>(1, check.object({ cgroupsPath: check.string().nullable() }));

/** What a container needs of its appkernel pod. */
export interface AppkernelPodView extends OciPodView, SandboxLayout {
  /** runsc's `wait` for container inits. */
  exits: ExitSource;
  /** The sandbox's host cgroup, whose OOM count is the pod's. */
  sandboxCgroup: string;
  /** Whether the sandbox process still runs. */
  sandboxRunning(): boolean;
}

export class AppkernelContainer extends OciContainer {
  private samples: ContainerStatsMetrics | undefined;
  /** Settles once `runsc wait` can be asked: the container started, or was signalled before it could. */
  private readonly startedOrSignalled = gate();
  protected override readonly stdioAtStart = true;

  private constructor(
    protected override readonly pod: AppkernelPodView,
    context: ContainerContext,
    private saved: AppkernelContainerState,
  ) {
    super(pod, context, 'runsc');
  }

  /** Task Create: the init created by `runsc create` inside the pod's sandbox, undone when a step fails. */
  static async create(pod: AppkernelPodView, context: ContainerContext): Promise<AppkernelContainer> {
    const container = new AppkernelContainer(pod, context, { cgroupsPath: null });
    await container.createInit();
    return container;
  }

  /** After a restart: runsc still knows the container and tells its exit, even one that came while kuasard was down. */
  static restore(pod: AppkernelPodView, context: ContainerContext, saved: SavedState | null): AppkernelContainer {
    const container = new AppkernelContainer(pod, context, containerState.load(saved, `container ${context.record.id}`));
    const { pid, status } = context.record;
    // A container whose exit is known already has nothing to follow.
    container.startedOrSignalled.resolve();
    const ended = status === 'stopped' ? new Promise<never>(() => undefined) : container.watchInit(pid);
    container.initProcess = OciProcess.adopted(pid, ended, (exit) => container.afterInitExit(exit));
    return container;
  }

  protected podSpec(cri: Spec, rootPath: string): Spec {
    return sandboxContainerSpec(cri, rootPath, this.pod);
  }

  /**
   * The pid runsc reports is the sandbox's, shared by every container: the exit comes from
   * `runsc wait <id>`, which refuses a container not started yet, so it is asked once the
   * container has started (or been signalled before that).
   */
  protected async watchInit(pid: number): Promise<ExitInfo> {
    await this.startedOrSignalled.promise;
    try {
      return await this.pod.exits.watch(pid, this.id);
    } catch (err) {
      // The sandbox died under the wait (runsc: "containerManager.Wait failed: EOF"), and every
      // container with it; the status died too. Any other failure is the wait's own.
      if (this.pod.sandboxRunning()) throw err;
      this.log.warn({ err }, 'the gVisor sandbox ended under the container; its exit status is lost');
      return exitedNow(UNKNOWN_EXIT_STATUS);
    }
  }

  protected created(spec: Spec): void {
    this.saved.cgroupsPath = cgroupsPathOf(spec, this.id);
  }

  override async start(): Promise<void> {
    try {
      await super.start();
    } finally {
      // A start that failed leaves runsc's answer to `wait` as the container's end.
      this.startedOrSignalled.resolve();
    }
  }

  override async kill(signal: number, all: boolean): Promise<void> {
    try {
      await super.kill(signal, all);
    } finally {
      this.startedOrSignalled.resolve();
    }
  }

  state(): SavedState {
    return containerState.save(this.saved);
  }

  override async delete(): Promise<void> {
    await super.delete();
    if (this.saved.cgroupsPath) await removeCgroup(this.saved.cgroupsPath);
  }

  /**
   * runsc enforces no memory limit of a container and reports no OOM: the host's OOM killer acts
   * on the sandbox's cgroup (the pod's limit), and its kill ends the whole sandbox. A container
   * whose sandbox's cgroup counts an OOM kill is reported OOM-killed, as runc's are.
   */
  protected async afterInitExit(exit: ExitInfo): Promise<ProcessEnd> {
    // gVisor leaves a container's other processes running when its init exits (a background
    // child holding the container's stdout would keep containerd waiting for the end of its
    // output for ever): as runc's shim does for a shared PID namespace, they are ended.
    if (this.pod.sandboxRunning()) {
      await this.pod.runtime.kill(this.id, 9, { all: true }).catch((err) => this.log.debug({ err }, 'killing what the init left'));
    }
    const oomKilled = await oomKilledIn(this.pod.sandboxCgroup, this.log);
    return { ...exit, oomKilled };
  }

  /** The sandbox kernel's figures for this container, in the host's cgroup version (see oci/stats-metrics.ts). */
  async stats(): Promise<CgroupMetrics> {
    const version = (await hostCgroupLayout()).mode === 'unified' ? 2 : 1;
    this.samples ??= new ContainerStatsMetrics(version);
    return this.samples.next(await this.pod.runtime.stats(this.id, { log: this.log }));
  }
}
