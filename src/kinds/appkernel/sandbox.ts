// One appkernel pod: a gVisor sandbox made by runsc from a root container that runs kuasar's idle
// program in the pod's network namespace, the pod's /etc files, and its containers, which runsc
// runs inside that sandbox. The sandbox process (runsc-sandbox, the sentry) is the pod: when it
// dies on its own, every container of the pod has died with it.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { failedPrecondition, invalidArgument } from '../../base/errors.js';
import type { CgroupMetrics } from '../../base/metrics.js';
import type { SavedState } from '../../base/model.js';
import { podHostname } from '../../base/pod-files.js';
import { timed } from '../../base/stages.js';
import type { ContainerContext, KindSandbox, PodNamespaces, SandboxContext, SandboxUpdate } from '../../kind-api/kind.js';
import { hasErrnoCode } from '../../linux/libc/binding.js';
import { removeCgroup } from '../../linux/cgroups.js';
import { unmountRecursive } from '../../linux/mount.js';
import { checkHostname } from '../../linux/namespaces.js';
import { isSameProcessRunning, readProcStat } from '../../linux/proc.js';
import type { Reaper } from '../../linux/reaper.js';
import { isGone } from '../../oci-kind/container.js';
import { podCgroupMetrics } from '../../oci-kind/pod-cgroup.js';
import { deleteUnrecordedContainers, podDirPaths, preparePodDir } from '../../oci-kind/pod-dir.js';
import { RuntimeWaitExitSource } from '../../oci/exit-source.js';
import type { OciRuntime } from '../../oci/runtime.js';
import { AppkernelContainer, type AppkernelPodView } from './container.js';
import { checkNotHostNetns, NETSTACK_START_LAUNCHER } from './netstack-start.js';
import { podState, type AppkernelPodState } from './pod-state.js';
import { sandboxSpec } from './sandbox-spec.js';

/** What the kind shares with each of its pods. */
export interface AppkernelEnvironment {
  /** runsc for pods with a network namespace of their own, and for pods on the node's network. */
  runtimes: { sandboxNetwork: OciRuntime; hostNetwork: OciRuntime };
  reaper: Reaper;
  /** Console sockets live here: a private directory with a short path. */
  consoleDir: string;
  /** The read-only directory holding only the idle program. */
  idleRoot: string;
}

/**
 * The sandbox's host cgroup, where runsc puts the sandbox, its gofers and stubs: below the pod's
 * cgroup parent (at the top without one), named after the sandbox so it can be found again.
 */
export function sentryCgroupsPath(record: SandboxContext['record']): string {
  return `${record.pod.cgroupParent.replace(/\/+$/, '')}/kuasar-gvisor-${record.id}`;
}

function podPaths(dir: string) {
  return { ...podDirPaths(dir), rootBundle: join(dir, 'root') };
}

export class AppkernelSandbox implements KindSandbox {
  private readonly paths: ReturnType<typeof podPaths>;
  /** runsc's `wait` for each container's init: their exits, with their real status, even after a restart. */
  private readonly exits: RuntimeWaitExitSource;
  /** Set once Stop or Shutdown ends the sandbox: its end is then no news. */
  private stopping = false;

  private constructor(
    private readonly env: AppkernelEnvironment,
    private readonly context: SandboxContext,
    private pod: AppkernelPodState,
  ) {
    this.paths = podPaths(context.dir);
    this.exits = new RuntimeWaitExitSource(this.runtime);
  }

  /** The pod's runsc: every command for one sandbox must carry the same global flags. */
  private get runtime(): OciRuntime {
    return runtimeFor(this.env, this.context);
  }

  /** The runsc id of the pod's root container, which names the sandbox to runsc. */
  private get runscId(): string {
    return this.context.record.id;
  }

  /** Controller Create: the pod's files and the root container's bundle; nothing runs yet. */
  static async create(env: AppkernelEnvironment, context: SandboxContext): Promise<AppkernelSandbox> {
    const { pod, id, netnsPath } = context.record;
    if (pod.hostname) {
      if (pod.hostNetwork)
        throw invalidArgument(`hostname ${JSON.stringify(pod.hostname)}: a pod on the node's network shares the node's hostname`);
      checkHostname(pod.hostname);
    }
    if (pod.hostIpc || pod.pidMode === 'node') {
      throw invalidArgument("an appkernel pod cannot share the node's IPC or PID namespace: its containers run inside their own kernel");
    }
    if (!pod.hostNetwork) checkNotHostNetns(netnsPath);
    await preparePodDir(context.dir, pod);
    const paths = podPaths(context.dir);
    await mkdir(paths.rootBundle);
    const spec = sandboxSpec({
      runscId: id,
      pod,
      hostname: podHostname(pod, { hostname: osHostname(), hosts: '', resolvConf: '' }),
      idleRoot: env.idleRoot,
      netnsPath,
      cgroupsPath: sentryCgroupsPath(context.record),
    });
    await writeFile(join(paths.rootBundle, 'config.json'), JSON.stringify(spec));
    return new AppkernelSandbox(env, context, { sentry: null });
  }

  /** After a restart: the pod from its saved state, once its sandbox process is found running. */
  static async restore(env: AppkernelEnvironment, context: SandboxContext, saved: SavedState | null): Promise<AppkernelSandbox> {
    const { id, phase } = context.record;
    const state = podState.load(saved, `recover sandbox ${id}`);
    const sandbox = new AppkernelSandbox(env, context, state);
    if (phase === 'ready' && state.sentry) {
      if (!isSameProcessRunning(state.sentry.pid, state.sentry.startTime)) {
        throw failedPrecondition(`recover sandbox ${id}: its gVisor sandbox (pid ${state.sentry.pid}) is gone`);
      }
      sandbox.watchSentry(state.sentry.pid, env.reaper.watchForeign(state.sentry.pid));
    }
    return sandbox;
  }

  state(): SavedState {
    return podState.save(this.pod);
  }

  taskAddress(): undefined {
    return undefined;
  }

  /** Controller Start: runsc creates the sandbox with its root container and starts the idle program. */
  async start(): Promise<{ pid: number }> {
    const log = this.context.log;
    const pidFile = join(this.paths.rootBundle, 'sandbox.pid');
    const pid = await timed(log, 'runsc.create-sandbox', () => this.runtime.create(this.runscId, this.paths.rootBundle, { pidFile, log }));
    const startTime = readProcStat(pid)?.startTime;
    if (!startTime) throw failedPrecondition(`sandbox ${this.runscId}: its gVisor sandbox (pid ${pid}) exited as it was created`);
    this.pod = { sentry: { pid, startTime } };
    // runsc-sandbox is re-parented to kuasard (a child subreaper) once `runsc create` exits.
    this.watchSentry(pid, this.env.reaper.watch(pid));
    const launcher = this.context.record.pod.hostNetwork ? undefined : NETSTACK_START_LAUNCHER;
    await timed(log, 'runsc.start-sandbox', () => this.runtime.start(this.runscId, { log, launcher }));
    log.info({ pid }, 'gVisor sandbox started');
    return { pid };
  }

  private watchSentry(pid: number, ended: Promise<unknown>): void {
    ended.then(
      () => {
        if (!this.stopping && this.pod.sentry?.pid === pid) this.context.isolationEnded(`its gVisor sandbox (pid ${pid}) exited`);
      },
      (err: unknown) => {
        // Reaped by the orphan sweep before this watch began: it died as soon as it was made.
        if (hasErrnoCode(err, 'ECHILD') && !this.stopping && this.pod.sentry?.pid === pid) {
          this.context.isolationEnded(`its gVisor sandbox (pid ${pid}) exited`);
        }
        // Otherwise the reaper stopped (daemon exit): the next run watches again.
      },
    );
  }

  /** Controller Stop, once every container has stopped: the sandbox ends with its root container. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.deleteRootContainer();
  }

  async destroy(): Promise<void> {
    this.stopping = true;
    this.exits.stop();
    await releasePod(this.env, this.context);
  }

  private async deleteRootContainer(): Promise<void> {
    await timed(this.context.log, 'runsc.delete-sandbox', () => deleteSandbox(this.runtime, this.runscId));
    this.pod = { sentry: null };
  }

  /** The pod's own cgroup (CRI's cgroup_parent), as containerd reads it for pod stats. */
  async metrics(): Promise<CgroupMetrics> {
    return podCgroupMetrics(this.context.record);
  }

  async update(update: SandboxUpdate): Promise<void> {
    this.context.log.debug({ fields: update.fields }, 'sandbox update: nothing of an appkernel pod changes');
  }

  /** Only the network namespace is on the host; the others live inside the gVisor kernel. */
  namespaces(): PodNamespaces {
    const { record } = this.context;
    return !record.pod.hostNetwork && record.netnsPath ? { network: record.netnsPath } : {};
  }

  private view(): AppkernelPodView {
    if (!this.pod.sentry) throw failedPrecondition(`sandbox ${this.context.record.id} has no gVisor sandbox (not started, or stopped)`);
    return {
      runtime: this.runtime,
      reaper: this.env.reaper,
      launch: { consoleDir: this.env.consoleDir, streams: this.context.streams },
      containersDir: this.paths.containersDir,
      files: this.paths,
      runscSandboxId: this.runscId,
      exits: this.exits,
      sandboxCgroup: sentryCgroupsPath(this.context.record),
      sandboxRunning: () => this.pod.sentry !== null && isSameProcessRunning(this.pod.sentry.pid, this.pod.sentry.startTime),
    };
  }

  createContainer(container: ContainerContext): Promise<AppkernelContainer> {
    return AppkernelContainer.create(this.view(), container);
  }

  async restoreContainer(container: ContainerContext, saved: SavedState | null): Promise<AppkernelContainer> {
    return AppkernelContainer.restore(this.view(), container, saved);
  }
}

function runtimeFor(env: AppkernelEnvironment, context: SandboxContext): OciRuntime {
  return context.record.pod.hostNetwork ? env.runtimes.hostNetwork : env.runtimes.sandboxNetwork;
}

/** `runsc delete --force` of the root container ends the sandbox and its gofer; gone already is done. */
async function deleteSandbox(runtime: OciRuntime, runscId: string): Promise<void> {
  await runtime.delete(runscId, { force: true }).catch((err: unknown) => {
    if (!isGone(err)) throw err;
  });
}

/**
 * Releases everything of a pod, including what its state does not know of (a daemon that died
 * inside Create or Start, or a state that cannot be believed): its containers, its sandbox, its
 * cgroup, its mounts. Idempotent.
 */
export async function releasePod(env: AppkernelEnvironment, context: SandboxContext): Promise<void> {
  const runtime = runtimeFor(env, context);
  await deleteUnrecordedContainers(runtime, context);
  await deleteSandbox(runtime, context.record.id);
  await removeCgroup(sentryCgroupsPath(context.record));
  await unmountRecursive(context.dir);
  await rm(podPaths(context.dir).rootBundle, { recursive: true, force: true });
}
