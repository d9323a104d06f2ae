// One container of a runc pod. Its spec joins the pod's namespaces and files; its init is
// re-parented to kuasard (a child subreaper), which reaps it. What it saves is what the next run
// needs to find it again: its init's start time (a pid alone may name another process by then)
// and its cgroup (for stats and the OOM count).
import * as check from '../../base/schema.js';
import type { CgroupMetrics } from '../../base/metrics.js';
import { exitedNow, UNKNOWN_EXIT_STATUS, type ExitInfo, type SavedState } from '../../base/model.js';
import type { ContainerContext, ProcessEnd } from '../../kind-api/kind.js';
import { stateCodec } from '../../kind-api/state.js';
import { oomKilledIn, readCgroupMetrics } from '../../linux/cgroup-stats.js';
import { isSameProcessRunning, readProcStat } from '../../linux/proc.js';
import { OciContainer, type OciPodView } from '../../oci-kind/container.js';
import { OciProcess } from '../../oci-kind/process.js';
import { cgroupsPathOf, type Spec } from '../../oci/spec.js';
import { hostCgroupLayout } from '../../linux/cgroups.js';
import { podContainerSpec, type PodLayout } from './container-spec.js';

interface RuncContainerState {
  /** The init's start time (/proc/<pid>/stat), null when it could not be read. */
  initStartTime: string | null;
  /** The container's cgroups path, as given to the runtime. */
  cgroupsPath: string;
}

const containerState = stateCodec<RuncContainerState>(
  1,
  check.object({ initStartTime: check.string().regex(/^\d+$/).nullable(), cgroupsPath: check.string() }),
);

/** What a container needs of its runc pod. */
export interface RuncPodView extends OciPodView {
  /** The pod's namespaces and files, for the container's spec (throws when the pod cannot take containers). */
  layout(): PodLayout;
  /** 'container': each container is the init of its own PID namespace. */
  pidMode: 'pod' | 'container' | 'node';
}

export class RuncContainer extends OciContainer {
  private constructor(
    protected override readonly pod: RuncPodView,
    context: ContainerContext,
    private saved: RuncContainerState,
  ) {
    super(pod, context, 'runc');
  }

  /** Task Create: the init created by `runc create`, undone when a step fails. */
  static async create(pod: RuncPodView, context: ContainerContext): Promise<RuncContainer> {
    const container = new RuncContainer(pod, context, { initStartTime: null, cgroupsPath: context.record.id });
    await container.createInit();
    return container;
  }

  /**
   * After a restart: the container from its saved state. Its init is no longer our child: we
   * learn when it ends, not how (255). One that ended while kuasard was down is reported so.
   */
  static restore(pod: RuncPodView, context: ContainerContext, saved: SavedState | null): RuncContainer {
    const state = containerState.load(saved, `container ${context.record.id}`);
    const container = new RuncContainer(pod, context, state);
    const { pid, status } = context.record;
    let ended: Promise<ExitInfo>;
    if (status === 'stopped') {
      // Its exit is known already; nothing follows it.
      ended = new Promise<never>(() => undefined);
    } else if (!state.initStartTime || !isSameProcessRunning(pid, state.initStartTime)) {
      context.log.warn('container exited while kuasard was down; its exit status is lost, reporting 255');
      ended = Promise.resolve(exitedNow(UNKNOWN_EXIT_STATUS));
    } else {
      ended = pod.reaper.watchForeign(pid).then((exit) => {
        context.log.warn('container exited after a kuasard restart; its exit status cannot be known, reporting 255');
        return exit;
      });
    }
    container.initProcess = OciProcess.adopted(pid, ended, (exit) => container.afterInitExit(exit));
    return container;
  }

  protected podSpec(cri: Spec, rootPath: string): Spec {
    return podContainerSpec(cri, rootPath, this.pod.layout());
  }

  protected watchInit(pid: number): Promise<ExitInfo> {
    return this.pod.reaper.watch(pid);
  }

  protected created(spec: Spec, initPid: number): void {
    this.saved.cgroupsPath = cgroupsPathOf(spec, this.id);
    this.saved.initStartTime = readProcStat(initPid)?.startTime ?? null;
  }

  state(): SavedState {
    return containerState.save(this.saved);
  }

  protected async afterInitExit(exit: ExitInfo): Promise<ProcessEnd> {
    // Only the end of a namespace's init takes its other processes along. A container in the
    // pod's (or the node's) PID namespace would leave them running: as runc's shim, end them.
    if (this.pod.pidMode !== 'container') {
      await this.pod.runtime.kill(this.id, 9, { all: true }).catch((err) => this.log.debug({ err }, 'killing what the init left'));
    }
    // The container's cgroup counts every OOM kill in it (oci-kind/pod-cgroup.ts).
    const oomKilled = await oomKilledIn(this.saved.cgroupsPath, this.log);
    return { ...exit, oomKilled };
  }

  async stats(): Promise<CgroupMetrics> {
    return readCgroupMetrics(this.saved.cgroupsPath, await hostCgroupLayout());
  }
}
