// The runc kind: pods are Linux namespaces and cgroups on the host, containers are run by an
// OCI runtime CLI (runc by default). No process stays per pod: the pod's IPC and UTS
// namespaces are pinned by bind mounts, its network namespace is the one CRI's CNI set up. Only
// a pod whose containers share one PID namespace gets a process: the holder of that namespace.
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { Code, failedPrecondition, invalidArgument, RuntimeError } from '../../base/errors.js';
import { isValidId } from '../../base/ids.js';
import type { CreatedProcess, PodNamespaces, SandboxContext, SandboxKind, TaskDriver } from '../../kind-api/kind.js';
import type { WindowSize } from '../../base/model.js';
import type { CgroupMetrics } from '../../base/metrics.js';
import { exitedNow, UNKNOWN_EXIT_STATUS, type ContainerRecord, type ExecRecord, type ExitInfo, type Platform } from '../../base/model.js';
import { podFiles, type HostFacts } from '../../base/pod-files.js';
import { timed } from '../../base/stages.js';
import { readCgroupMetrics, readOomKills } from '../../linux/cgroup-stats.js';
import { hostPlatform } from '../../linux/platform.js';
import { makePrivateBindOfItself, mountAll, mountOne, unmountPrivateBindOfItself, unmountRecursive } from '../../linux/mount.js';
import { checkHostname, pinPodNamespaces, unpinPodNamespaces } from '../../linux/namespaces.js';
import { isMountPoint } from '../../linux/mountinfo.js';
import {
  findHolders,
  holderPidNamespacePath,
  isHolderRunning,
  startPidNamespaceHolder,
  stopPidNamespaceHolder,
  type HolderNamespaces,
  type PidNamespaceHolder,
} from '../../linux/pid-holder.js';
import { isSameProcessRunning, readProcStat } from '../../linux/proc.js';
import type { Reaper } from '../../linux/reaper.js';
import { checkPodSysctls } from '../../linux/sysctls.js';
import { OciRuntime } from '../../oci/runtime.js';
import { ContainerCgroups, hostCgroupLayout } from './cgroups.js';
import { podContainerSpec, type PodLayout } from './container-spec.js';
import type { Spec } from '../../oci/spec.js';
import { checkPodState, holderCgroupName, namespacesDir, type RuncPodState } from './pod-state.js';
import { RuncProcesses } from './processes.js';

export interface RuncKindOptions {
  /** The kind's state directory (`<state_dir>/runc`); sandboxes live in its subdirectories. */
  kindDir: string;
  /** The OCI runtime CLI: runc, crun, or a path. */
  ociRuntime: string;
  reaper: Reaper;
}

/** The pod's /dev/shm: what CRI gives a pod (64 MiB, world-writable with the sticky bit). */
const SHM_MOUNT = { type: 'tmpfs', source: 'shm', options: ['nosuid', 'nodev', 'noexec', 'mode=1777', 'size=65536k'] };

/** Paths of one pod's pieces inside its sandbox directory. */
function podPaths(dir: string) {
  return {
    nsDir: namespacesDir(dir),
    etcDir: join(dir, 'etc'),
    hostnameFile: join(dir, 'etc', 'hostname'),
    hostsFile: join(dir, 'etc', 'hosts'),
    resolvConfFile: join(dir, 'etc', 'resolv.conf'),
    shmDir: join(dir, 'shm'),
    containersDir: join(dir, 'containers'),
  };
}

/** What is saved of a container, to find its process again after a daemon restart. */
interface RuncContainerState {
  initStartTime: string;
}

/**
 * The kind's state of the pod when the record holds a valid one, else null: a damaged or
 * foreign value must never name what destroy unmounts, kills or removes.
 */
function podStateOf(sandbox: SandboxContext): RuncPodState | null {
  const checked = checkPodState(sandbox.record.kindState, sandbox.record.id, sandbox.dir);
  return 'state' in checked ? checked.state : null;
}

/** A runtime failure that says the container is gone already. */
const isGone = (err: unknown): boolean => err instanceof RuntimeError && err.code === Code.NotFound;

export class RuncKind implements SandboxKind {
  readonly name = 'runc';
  readonly tasks: TaskDriver;
  private readonly runtime: OciRuntime;

  private readonly runtimeDirs: { root: string; logDir: string; consoleDir: string };

  constructor(private readonly options: RuncKindOptions) {
    this.runtimeDirs = { root: `${options.kindDir}.oci`, logDir: `${options.kindDir}.oci-log`, consoleDir: `${options.kindDir}.console` };
    this.runtime = new OciRuntime({ binary: options.ociRuntime, root: this.runtimeDirs.root, logDir: this.runtimeDirs.logDir });
    const processes = new RuncProcesses(this.runtime, options.reaper, this.runtimeDirs.consoleDir);
    this.tasks = new RuncTasks(this.runtime, options.reaper, processes);
  }

  async init(): Promise<void> {
    // Each runtime call's log file is removed when the call ends; those left were of calls the
    // previous daemon died in, and nothing reads them any more.
    await rm(this.runtimeDirs.logDir, { recursive: true, force: true });
    for (const dir of [this.options.kindDir, this.runtimeDirs.root, this.runtimeDirs.logDir, this.runtimeDirs.consoleDir]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    }
    // Namespace files can only be bind-mounted below a mount that does not propagate.
    await makePrivateBindOfItself(this.options.kindDir);
    await this.runtime.version();
  }

  platform(): Platform {
    return hostPlatform();
  }

  async prepare(sandbox: SandboxContext): Promise<void> {
    const pod = sandbox.record.pod;
    // Host-network pods share the node's UTS namespace (and so its hostname), as kubelet expects.
    const ownUts = !pod.hostNetwork;
    checkPodSysctls(pod.sysctls, { net: !pod.hostNetwork, ipc: !pod.hostIpc, uts: ownUts });
    if (pod.hostname) {
      if (!ownUts)
        throw invalidArgument(`hostname ${JSON.stringify(pod.hostname)}: a pod on the node's network shares the node's hostname`);
      checkHostname(pod.hostname);
    }
    const paths = podPaths(sandbox.dir);
    const host = await hostFacts();
    const files = podFiles(pod, host);
    await mkdir(paths.etcDir, { recursive: true });
    await writeFile(paths.hostnameFile, files.hostname);
    await writeFile(paths.hostsFile, files.hosts);
    await writeFile(paths.resolvConfFile, files.resolvConf);
    await mkdir(paths.containersDir);

    // With no hostname of its own, the new UTS namespace keeps the node's name, as runc leaves it.
    const pinned = await timed(sandbox.log, 'runc.pin-namespaces', () =>
      pinPodNamespaces(paths.nsDir, { ipc: !pod.hostIpc, uts: ownUts, ...(pod.hostname ? { hostname: pod.hostname } : {}) }),
    );
    const state: RuncPodState = { ipcPath: pinned.ipcPath ?? null, utsPath: pinned.utsPath ?? null };
    sandbox.record.kindState = state;

    await mkdir(paths.shmDir);
    if (!pod.hostIpc) await timed(sandbox.log, 'runc.mount-shm', () => mountOne(SHM_MOUNT, paths.shmDir));
  }

  async start(sandbox: SandboxContext): Promise<{ pid: number }> {
    if (sandbox.record.pod.pidMode !== 'pod') return { pid: 0 };
    const state = podStateOf(sandbox);
    if (!state) throw failedPrecondition(`start sandbox ${sandbox.record.id}: it was not prepared`);
    // The holder joins the pod's other namespaces too, so that containerd, which takes the
    // sandbox pid for /proc/<pid>/ns/*, finds every one of them there.
    const join: HolderNamespaces = {};
    if (!sandbox.record.pod.hostNetwork && sandbox.record.netnsPath) join.netns = sandbox.record.netnsPath;
    if (state.ipcPath) join.ipc = state.ipcPath;
    if (state.utsPath) join.uts = state.utsPath;
    const parent = sandbox.record.pod.cgroupParent;
    const cgroup = parent ? `${parent.replace(/\/+$/, '')}/${holderCgroupName(sandbox.record.id)}` : undefined;
    const holder = await timed(sandbox.log, 'runc.start-pid-holder', () => startPidNamespaceHolder(join, cgroup));
    // The checked state is a copy: the record gets the new one.
    sandbox.record.kindState = { ...state, pidHolder: holder } satisfies RuncPodState;
    sandbox.log.info({ pid: holder.pid, cgroup: holder.cgroupsPath }, 'PID namespace holder started');
    return { pid: holder.pid };
  }

  async stop(sandbox: SandboxContext): Promise<void> {
    // Besides its containers (core has stopped them), only the PID namespace holder runs.
    await this.stopPidHolder(sandbox);
  }

  private async stopPidHolder(sandbox: SandboxContext): Promise<void> {
    const state = podStateOf(sandbox);
    if (!state?.pidHolder) return;
    await timed(sandbox.log, 'runc.stop-pid-holder', () => stopPidNamespaceHolder(state.pidHolder!));
    sandbox.record.kindState = { ...state, pidHolder: null } satisfies RuncPodState;
  }

  /** The pod's own cgroup (CRI's cgroup_parent, where kubelet puts a pod's limits), as containerd reads it for pod stats. */
  async metrics(sandbox: SandboxContext): Promise<CgroupMetrics> {
    const parent = sandbox.record.pod.cgroupParent;
    if (!parent) throw failedPrecondition(`metrics of sandbox ${sandbox.record.id}: the pod has no cgroup of its own (no cgroup_parent)`);
    return readCgroupMetrics(parent, await hostCgroupLayout());
  }

  async recover(sandbox: SandboxContext): Promise<void> {
    const checked = checkPodState(sandbox.record.kindState, sandbox.record.id, sandbox.dir);
    if ('problem' in checked) throw failedPrecondition(`recover sandbox ${sandbox.record.id}: ${checked.problem}`);
    const state = checked.state;
    for (const path of [state?.ipcPath, state?.utsPath]) {
      if (path && !(await isMountPoint(path))) {
        throw failedPrecondition(`recover sandbox ${sandbox.record.id}: its pinned namespace ${path} is gone`);
      }
    }
    if (sandbox.record.phase === 'ready' && state?.pidHolder && !isHolderRunning(state.pidHolder)) {
      throw failedPrecondition(
        `recover sandbox ${sandbox.record.id}: the holder of its PID namespace (pid ${state.pidHolder.pid}) is gone`,
      );
    }
  }

  /** The pod's own namespaces: the ones pinned in prepare, the CNI netns, the holder's PID namespace. */
  namespaces(sandbox: SandboxContext): PodNamespaces {
    const state = podStateOf(sandbox);
    const pod = sandbox.record.pod;
    return {
      ...(!pod.hostNetwork && sandbox.record.netnsPath ? { network: sandbox.record.netnsPath } : {}),
      ...(state?.ipcPath ? { ipc: state.ipcPath } : {}),
      ...(state?.utsPath ? { uts: state.utsPath } : {}),
      ...(state?.pidHolder ? { pid: holderPidNamespacePath(state.pidHolder) } : {}),
    };
  }

  async closeIdle(): Promise<void> {
    // Pods pin their namespaces below the private bind init made; with no pod left it can go.
    // A directory left for inspection (an unreadable state file) may still hold mounts: the bind
    // then stays, as it must.
    await unmountPrivateBindOfItself(this.options.kindDir);
  }

  /**
   * Releases everything of the pod, including what its record does not know of: after a crash
   * between two steps (or with an unusable state file) a holder or a runc container may exist
   * that was never saved.
   */
  async destroy(sandbox: SandboxContext): Promise<void> {
    const paths = podPaths(sandbox.dir);
    await this.deleteUnrecordedContainers(sandbox);
    await this.stopPidHolder(sandbox);
    if (this.mayHaveUnrecordedHolder(sandbox)) {
      const lost = findHolders({
        namespaceFiles: [join(paths.nsDir, 'ipc'), join(paths.nsDir, 'uts')],
        cgroupName: holderCgroupName(sandbox.record.id),
      });
      for (const holder of lost) {
        sandbox.log.warn({ pid: holder.pid, cgroup: holder.cgroupsPath }, 'stopping a PID namespace holder the state file did not record');
        await stopPidNamespaceHolder(holder);
      }
    }
    await unpinPodNamespaces(paths.nsDir);
    await unmountRecursive(sandbox.dir);
  }

  /**
   * A holder is saved once the pod has started (startedAt set) or stopped; one started by a
   * daemon that died before saving, or by a pod whose state cannot be believed, is looked for.
   */
  private mayHaveUnrecordedHolder(sandbox: SandboxContext): boolean {
    const record = sandbox.record;
    if (podStateOf(sandbox) === null) return true;
    return record.pod.pidMode === 'pod' && record.startedAt === null;
  }

  /**
   * Container directories with no record: the daemon died inside a Task Create, after runc may
   * have created the container and before the record was saved (containerd was told nothing).
   */
  private async deleteUnrecordedContainers(sandbox: SandboxContext): Promise<void> {
    const { containersDir } = podPaths(sandbox.dir);
    const recorded = new Set(sandbox.record.containers.map((c) => c.id));
    const entries = await readdir(containersDir).catch(() => [] as string[]);
    for (const id of entries.filter((name) => isValidId(name) && !recorded.has(name))) {
      sandbox.log.warn({ container: id }, 'deleting a container the state file did not record');
      await this.runtime.delete(id, { force: true }).catch((err: unknown) => {
        if (!isGone(err)) throw err;
      });
      await unmountRecursive(join(containersDir, id));
      await rm(join(containersDir, id), { recursive: true, force: true });
    }
  }
}

class RuncTasks implements TaskDriver {
  private readonly cgroups = new ContainerCgroups();

  constructor(
    private readonly runtime: OciRuntime,
    private readonly reaper: Reaper,
    private readonly processes: RuncProcesses,
  ) {}

  private dirs(sandbox: SandboxContext, container: ContainerRecord) {
    const dir = join(podPaths(sandbox.dir).containersDir, container.id);
    return { dir, rootfs: join(dir, 'rootfs'), pidFile: join(dir, 'init.pid') };
  }

  async create(sandbox: SandboxContext, container: ContainerRecord): Promise<CreatedProcess> {
    const { dir, rootfs, pidFile } = this.dirs(sandbox, container);
    const log = sandbox.log.child({ container: container.id });
    await mkdir(rootfs, { recursive: true, mode: 0o700 });
    const spec = JSON.parse(await readFile(join(container.bundle, 'config.json'), 'utf8')) as Spec;
    if (container.rootfs.length > 0) {
      await timed(log, 'runc.mount-rootfs', () => mountAll(container.rootfs, rootfs));
    }
    // With no mounts, containerd has prepared the rootfs inside the bundle itself.
    const rootPath = container.rootfs.length > 0 ? rootfs : join(container.bundle, spec.root?.path ?? 'rootfs');
    const pod = podPaths(sandbox.dir);
    const podState = podStateOf(sandbox);
    if (!podState) throw failedPrecondition(`create container ${container.id}: sandbox ${sandbox.record.id} has no namespaces prepared`);
    const layout: PodLayout = {
      pod: sandbox.record.pod,
      netnsPath: sandbox.record.netnsPath,
      ipcPath: podState.ipcPath,
      utsPath: podState.utsPath,
      pidPath: sandbox.record.pod.pidMode === 'pod' ? holderPidNamespacePath(requireHolder(sandbox, podState)) : null,
      hostnameFile: pod.hostnameFile,
      hostsFile: pod.hostsFile,
      resolvConfFile: pod.resolvConfFile,
      shmDir: sandbox.record.pod.hostIpc ? '/dev/shm' : pod.shmDir,
    };
    const runcSpec = podContainerSpec(spec, rootPath, layout);
    await writeFile(join(dir, 'config.json'), JSON.stringify(runcSpec));
    this.cgroups.remember(container, runcSpec);

    const created = await this.processes.createInit(sandbox, container, dir, pidFile);
    const initStartTime = readProcStat(created.pid)?.startTime;
    if (initStartTime) container.kindState = { initStartTime } satisfies RuncContainerState;
    return { pid: created.pid, exited: created.exited.then((exit) => this.afterInitExit(sandbox, container, exit)) };
  }

  /** What follows the end of a container's init, before core reports the exit. */
  private async afterInitExit(sandbox: SandboxContext, container: ContainerRecord, exit: ExitInfo): Promise<ExitInfo> {
    const log = sandbox.log.child({ container: container.id });
    // Only the end of a namespace's init takes its other processes along. A container in the
    // pod's (or the node's) PID namespace would leave them running: as runc's shim, end them.
    if (sandbox.record.pod.pidMode !== 'container') {
      await this.runtime.kill(container.id, 9, { all: true }).catch((err) => log.debug({ err }, 'killing what the init left'));
    }
    // The cgroup outlives the init until Delete, and counts every OOM kill in it: a container
    // that met its memory limit is reported, before its exit, as containerd's shims do.
    try {
      const kills = await readOomKills(await this.cgroups.pathOf(container, this.dirs(sandbox, container).dir), await hostCgroupLayout());
      if (kills !== undefined && kills > 0n) sandbox.reportOom(container.id);
    } catch (err) {
      log.warn({ err }, "could not read the container's OOM count");
    }
    return exit;
  }

  async start(sandbox: SandboxContext, container: ContainerRecord): Promise<void> {
    await timed(sandbox.log.child({ container: container.id }), 'oci.start', () => this.runtime.start(container.id));
  }

  async kill(_sandbox: SandboxContext, container: ContainerRecord, signal: number, all: boolean): Promise<void> {
    await this.runtime.kill(container.id, signal, { all });
  }

  async delete(sandbox: SandboxContext, container: ContainerRecord): Promise<void> {
    const { dir, rootfs } = this.dirs(sandbox, container);
    const log = sandbox.log.child({ container: container.id });
    await this.processes.release(sandbox, container, null, dir);
    // Gone already: the daemon died after runc deleted it, or before runc created it.
    await timed(log, 'oci.delete', () => this.runtime.delete(container.id, { force: true })).catch((err: unknown) => {
      if (!isGone(err)) throw err;
    });
    await timed(log, 'runc.unmount-rootfs', () => unmountRecursive(rootfs));
    await rm(dir, { recursive: true, force: true });
  }

  async pids(_sandbox: SandboxContext, container: ContainerRecord): Promise<number[]> {
    return this.runtime.ps(container.id);
  }

  async stats(sandbox: SandboxContext, container: ContainerRecord): Promise<CgroupMetrics> {
    return readCgroupMetrics(await this.cgroups.pathOf(container, this.dirs(sandbox, container).dir), await hostCgroupLayout());
  }

  async update(sandbox: SandboxContext, container: ContainerRecord, resources: Record<string, unknown>): Promise<void> {
    const file = join(this.dirs(sandbox, container).dir, 'resources-update.json');
    await writeFile(file, JSON.stringify(resources));
    try {
      await timed(sandbox.log.child({ container: container.id }), 'oci.update', () => this.runtime.update(container.id, file));
    } finally {
      await rm(file, { force: true });
    }
  }

  async pause(sandbox: SandboxContext, container: ContainerRecord): Promise<void> {
    await timed(sandbox.log.child({ container: container.id }), 'oci.pause', () => this.runtime.pause(container.id));
  }

  async resume(sandbox: SandboxContext, container: ContainerRecord): Promise<void> {
    await timed(sandbox.log.child({ container: container.id }), 'oci.resume', () => this.runtime.resume(container.id));
  }

  async startExec(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord): Promise<CreatedProcess> {
    return this.processes.startExec(sandbox, container, exec, this.dirs(sandbox, container).dir);
  }

  async killExec(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord, signal: number): Promise<void> {
    await this.processes.killExec(sandbox, container, exec, signal);
  }

  async deleteExec(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord): Promise<void> {
    await this.processes.release(sandbox, container, exec, this.dirs(sandbox, container).dir);
  }

  async resizePty(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord | null, size: WindowSize): Promise<void> {
    this.processes.resize(sandbox, container, exec, size);
  }

  async closeStdin(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord | null): Promise<void> {
    this.processes.closeStdin(sandbox, container, exec);
  }

  async reattach(sandbox: SandboxContext, container: ContainerRecord): Promise<ExitInfo> {
    const log = sandbox.log.child({ container: container.id, pid: container.pid });
    const state = container.kindState as RuncContainerState | null;
    // The pid alone could name another process by now: its start time tells them apart.
    let exit: ExitInfo;
    if (!state || !isSameProcessRunning(container.pid, state.initStartTime)) {
      log.warn('container exited while kuasard was down; its exit status is lost, reporting 255');
      exit = exitedNow(UNKNOWN_EXIT_STATUS);
    } else {
      // Still running, but no longer our child: we will learn when it ends, not how.
      exit = await this.reaper.watchForeign(container.pid);
      log.warn('container exited after a kuasard restart; its exit status cannot be known, reporting 255');
    }
    return this.afterInitExit(sandbox, container, exit);
  }
}

function requireHolder(sandbox: SandboxContext, state: RuncPodState): PidNamespaceHolder {
  if (!state.pidHolder)
    throw failedPrecondition(`sandbox ${sandbox.record.id} shares a PID namespace, but it has no holder (not started?)`);
  return state.pidHolder;
}

async function hostFacts(): Promise<HostFacts> {
  const read = (path: string) => readFile(path, 'utf8').catch(() => '');
  return { hostname: osHostname(), hosts: await read('/etc/hosts'), resolvConf: await read('/etc/resolv.conf') };
}
