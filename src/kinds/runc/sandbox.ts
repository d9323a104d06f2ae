// One runc pod: namespaces pinned by bind mounts (IPC, UTS), the network namespace CRI's CNI set
// up, the pod's /etc files and /dev/shm, and, for a pod whose containers share one PID
// namespace, the process that holds it. That holder is the pod's only process: when it dies
// on its own, the pod's isolation has ended (every process in its namespace died with it).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { failedPrecondition, invalidArgument } from '../../base/errors.js';
import type { CgroupMetrics } from '../../base/metrics.js';
import type { SavedState } from '../../base/model.js';
import { timed } from '../../base/stages.js';
import type { ContainerContext, KindSandbox, PodNamespaces, SandboxContext, SandboxUpdate } from '../../kind-api/kind.js';
import { mountOne, unmountRecursive } from '../../linux/mount.js';
import { isMountPoint } from '../../linux/mountinfo.js';
import { checkHostname, pinPodNamespaces, unpinPodNamespaces } from '../../linux/namespaces.js';
import {
  holderPidNamespacePath,
  isHolderRunning,
  startPidNamespaceHolder,
  stopLostHolders,
  stopPidNamespaceHolder,
  type HolderNamespaces,
  type PidNamespaceHolder,
} from '../../linux/pid-holder.js';
import type { Reaper } from '../../linux/reaper.js';
import { checkPodSysctls } from '../../linux/sysctls.js';
import type { OciRuntime } from '../../oci/runtime.js';
import { podCgroupMetrics } from '../../oci-kind/pod-cgroup.js';
import { deleteUnrecordedContainers, podDirPaths, preparePodDir } from '../../oci-kind/pod-dir.js';
import { RuncContainer, type RuncPodView } from './container.js';
import type { PodLayout } from './container-spec.js';
import { holderCgroupName, holderCgroupsPath, namespacesDir, podStateCodec, type RuncPodState } from './pod-state.js';

/** What the kind shares with each of its pods. */
export interface RuncEnvironment {
  runtime: OciRuntime;
  reaper: Reaper;
  /** Console sockets live here: a private directory with a short path. */
  consoleDir: string;
}

/** The pod's /dev/shm: what CRI gives a pod (64 MiB, world-writable with the sticky bit). */
const SHM_MOUNT = { type: 'tmpfs', source: 'shm', options: ['nosuid', 'nodev', 'noexec', 'mode=1777', 'size=65536k'] };

/** Paths of one pod's pieces inside its sandbox directory. */
function podPaths(dir: string) {
  return { ...podDirPaths(dir), nsDir: namespacesDir(dir), shmDir: join(dir, 'shm') };
}

export class RuncSandbox implements KindSandbox {
  /** Set once Stop or Shutdown ends the holder: its end is then no news. */
  private stopping = false;

  private constructor(
    private readonly env: RuncEnvironment,
    private readonly context: SandboxContext,
    private pod: RuncPodState,
  ) {}

  /** Made when asked for, not kept: a dozen long strings per running pod, used at its containers' creates. */
  private get paths(): ReturnType<typeof podPaths> {
    return podPaths(this.context.dir);
  }

  /** Controller Create: the pod's files, pinned namespaces and /dev/shm (the engine calls releasePod when this fails). */
  static async create(env: RuncEnvironment, context: SandboxContext): Promise<RuncSandbox> {
    const pod = context.record.pod;
    // Host-network pods share the node's UTS namespace (and so its hostname), as kubelet expects.
    const ownUts = !pod.hostNetwork;
    checkPodSysctls(pod.sysctls, { net: !pod.hostNetwork, ipc: !pod.hostIpc, uts: ownUts });
    if (pod.hostname) {
      if (!ownUts)
        throw invalidArgument(`hostname ${JSON.stringify(pod.hostname)}: a pod on the node's network shares the node's hostname`);
      checkHostname(pod.hostname);
    }
    const paths = podPaths(context.dir);
    await preparePodDir(context.dir, pod);

    // With no hostname of its own, the new UTS namespace keeps the node's name, as runc leaves it.
    const pinned = await timed(context.log, 'runc.pin-namespaces', () =>
      pinPodNamespaces(paths.nsDir, { ipc: !pod.hostIpc, uts: ownUts, ...(pod.hostname ? { hostname: pod.hostname } : {}) }),
    );
    const sandbox = new RuncSandbox(env, context, { ipcPath: pinned.ipcPath ?? null, utsPath: pinned.utsPath ?? null, pidHolder: null });
    await mkdir(paths.shmDir);
    if (!pod.hostIpc) await timed(context.log, 'runc.mount-shm', () => mountOne(SHM_MOUNT, paths.shmDir));
    return sandbox;
  }

  /** After a restart: the pod from its saved state, once its pinned namespaces and its holder are found. */
  static async restore(env: RuncEnvironment, context: SandboxContext, saved: SavedState | null): Promise<RuncSandbox> {
    const { id } = context.record;
    const state = podStateCodec(id, context.dir).load(saved, `recover sandbox ${id}`);
    for (const path of [state.ipcPath, state.utsPath]) {
      if (path && !(await isMountPoint(path))) throw failedPrecondition(`recover sandbox ${id}: its pinned namespace ${path} is gone`);
    }
    const sandbox = new RuncSandbox(env, context, state);
    if (context.record.phase === 'ready' && state.pidHolder) {
      if (!isHolderRunning(state.pidHolder)) {
        throw failedPrecondition(`recover sandbox ${id}: the holder of its PID namespace (pid ${state.pidHolder.pid}) is gone`);
      }
      sandbox.watchHolder(state.pidHolder);
    }
    return sandbox;
  }

  state(): SavedState {
    return podStateCodec(this.context.record.id, this.context.dir).save(this.pod);
  }

  taskAddress(): undefined {
    return undefined;
  }

  async start(): Promise<{ pid: number }> {
    const record = this.context.record;
    if (record.pod.pidMode !== 'pod') return { pid: 0 };
    // The holder joins the pod's other namespaces too, so that containerd, which takes the
    // sandbox pid for /proc/<pid>/ns/*, finds every one of them there.
    const join: HolderNamespaces = {};
    if (!record.pod.hostNetwork && record.netnsPath) join.netns = record.netnsPath;
    if (this.pod.ipcPath) join.ipc = this.pod.ipcPath;
    if (this.pod.utsPath) join.uts = this.pod.utsPath;
    const holder = await timed(this.context.log, 'runc.start-pid-holder', () =>
      startPidNamespaceHolder(join, holderCgroupsPath(record.id, record.pod.cgroupParent)),
    );
    this.pod = { ...this.pod, pidHolder: holder };
    this.context.log.info({ pid: holder.pid, cgroup: holder.cgroupsPath }, 'PID namespace holder started');
    this.watchHolder(holder);
    return { pid: holder.pid };
  }

  /** The holder is the pod: when it ends unasked, every process of the pod's PID namespace has ended with it. */
  private watchHolder(holder: PidNamespaceHolder): void {
    this.env.reaper.watchForeign(holder.pid).then(
      () => {
        if (!this.stopping && this.pod.pidHolder === holder) {
          this.context.isolationEnded(`the holder of the pod's PID namespace (pid ${holder.pid}) exited`);
        }
      },
      // The reaper stopped (daemon exit): the next run watches again.
      () => undefined,
    );
  }

  async stop(): Promise<void> {
    // Besides its containers (the engine has stopped them), only the PID namespace holder runs.
    await this.stopPidHolder();
  }

  private async stopPidHolder(): Promise<void> {
    const holder = this.pod.pidHolder;
    if (!holder) return;
    this.stopping = true;
    await timed(this.context.log, 'runc.stop-pid-holder', () => stopPidNamespaceHolder(holder));
    this.pod = { ...this.pod, pidHolder: null };
  }

  async destroy(): Promise<void> {
    await this.stopPidHolder();
    await releasePod(this.env, this.context, this.pod);
  }

  /** The pod's own cgroup (CRI's cgroup_parent, where kubelet puts a pod's limits), as containerd reads it for pod stats. */
  async metrics(): Promise<CgroupMetrics> {
    return podCgroupMetrics(this.context.record);
  }

  /** Nothing of a runc pod's isolation follows the fields containerd may update: kubelet resizes the pod's cgroup itself. */
  async update(update: SandboxUpdate): Promise<void> {
    this.context.log.debug({ fields: update.fields }, 'sandbox update: nothing of a runc pod changes');
  }

  /** The pod's own namespaces: the ones pinned at create, the CNI netns, the holder's PID namespace. */
  namespaces(): PodNamespaces {
    const { record } = this.context;
    const { ipcPath, utsPath, pidHolder } = this.pod;
    return {
      ...(!record.pod.hostNetwork && record.netnsPath ? { network: record.netnsPath } : {}),
      ...(ipcPath ? { ipc: ipcPath } : {}),
      ...(utsPath ? { uts: utsPath } : {}),
      ...(pidHolder ? { pid: holderPidNamespacePath(pidHolder) } : {}),
    };
  }

  private view(): RuncPodView {
    const { runtime, reaper, consoleDir } = this.env;
    return {
      runtime,
      reaper,
      launch: { consoleDir, streams: this.context.streams },
      containersDir: this.paths.containersDir,
      layout: () => this.layout(),
      pidMode: this.context.record.pod.pidMode,
    };
  }

  private layout(): PodLayout {
    const { record } = this.context;
    const { pidHolder } = this.pod;
    if (record.pod.pidMode === 'pod' && !pidHolder) {
      throw failedPrecondition(`sandbox ${record.id} shares a PID namespace, but it has no holder (not started?)`);
    }
    return {
      pod: record.pod,
      netnsPath: record.netnsPath,
      ipcPath: this.pod.ipcPath,
      utsPath: this.pod.utsPath,
      pidPath: pidHolder && record.pod.pidMode === 'pod' ? holderPidNamespacePath(pidHolder) : null,
      files: this.paths,
      shmDir: record.pod.hostIpc ? '/dev/shm' : this.paths.shmDir,
    };
  }

  createContainer(container: ContainerContext): Promise<RuncContainer> {
    return RuncContainer.create(this.view(), container);
  }

  async restoreContainer(container: ContainerContext, saved: SavedState | null): Promise<RuncContainer> {
    return RuncContainer.restore(this.view(), container, saved);
  }
}

/**
 * Releases everything of a pod, including what `state` does not know of: after a crash between
 * two steps (or with no state to believe) a holder or a runc container may exist that was never
 * saved. Idempotent.
 */
export async function releasePod(env: RuncEnvironment, context: SandboxContext, state: RuncPodState | null): Promise<void> {
  const paths = podPaths(context.dir);
  await deleteUnrecordedContainers(env.runtime, context);
  if (state?.pidHolder) await stopPidNamespaceHolder(state.pidHolder);
  // A holder is saved once the pod has started; one started by a daemon that died before
  // saving, or by a pod whose state cannot be believed, is looked for.
  const mayHaveUnrecordedHolder = state === null || (context.record.pod.pidMode === 'pod' && context.record.startedAt === null);
  if (mayHaveUnrecordedHolder) {
    const stopped = await stopLostHolders(
      { namespaceFiles: [join(paths.nsDir, 'ipc'), join(paths.nsDir, 'uts')], cgroupName: holderCgroupName(context.record.id) },
      holderCgroupsPath(context.record.id, context.record.pod.cgroupParent),
    );
    for (const holder of stopped) {
      context.log.warn({ pid: holder.pid, cgroup: holder.cgroupsPath }, 'stopped a PID namespace holder the state file did not record');
    }
  }
  await unpinPodNamespaces(paths.nsDir);
  await unmountRecursive(context.dir);
}
