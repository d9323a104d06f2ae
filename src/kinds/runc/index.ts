// The runc kind: pods are Linux namespaces and cgroups on the host, containers are run by an
// OCI runtime CLI (runc by default). No process stays per pod: the pod's IPC and UTS
// namespaces are pinned by bind mounts, its network namespace is the one CRI's CNI set up.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { failedPrecondition } from '../../core/errors.js';
import type { CreatedProcess, SandboxContext, SandboxKind, TaskDriver } from '../../core/kind.js';
import { nowIso, type ContainerRecord, type ExitInfo, type Platform } from '../../core/model.js';
import { podFiles, podHostname, type HostFacts } from '../../core/pod-files.js';
import { timed } from '../../core/stages.js';
import { openContainerStdio } from '../../io/fifo.js';
import { hostPlatform } from '../../linux/platform.js';
import { makePrivateBindOfItself, mountAll, mountOne, unmountRecursive } from '../../linux/mount.js';
import { pinPodNamespaces, unpinPodNamespaces } from '../../linux/namespaces.js';
import { isMountPoint } from '../../linux/mountinfo.js';
import { isSameProcessRunning, readProcStat } from '../../linux/proc.js';
import { UNKNOWN_EXIT_STATUS, type Reaper } from '../../linux/reaper.js';
import { OciRuntime } from '../../oci/runtime.js';
import { podContainerSpec, type PodContainerSpec, type PodLayout } from './container-spec.js';

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
    nsDir: join(dir, 'ns'),
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

interface RuncPodState {
  ipcPath: string | null;
  utsPath: string | null;
}

export class RuncKind implements SandboxKind {
  readonly name = 'runc';
  readonly tasks: TaskDriver;
  private readonly runtime: OciRuntime;

  private readonly runtimeDirs: { root: string; logDir: string };

  constructor(private readonly options: RuncKindOptions) {
    this.runtimeDirs = { root: `${options.kindDir}.oci`, logDir: `${options.kindDir}.oci-log` };
    this.runtime = new OciRuntime({ binary: options.ociRuntime, ...this.runtimeDirs });
    this.tasks = new RuncTasks(this.runtime, options.reaper);
  }

  async init(): Promise<void> {
    for (const dir of [this.options.kindDir, this.runtimeDirs.root, this.runtimeDirs.logDir]) {
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
    if (pod.pidMode === 'pod') {
      throw failedPrecondition(`create sandbox ${sandbox.record.id}: a PID namespace shared by the pod is not supported yet`);
    }
    const paths = podPaths(sandbox.dir);
    const host = await hostFacts();
    const files = podFiles(pod, host);
    await mkdir(paths.etcDir, { recursive: true });
    await writeFile(paths.hostnameFile, files.hostname);
    await writeFile(paths.hostsFile, files.hosts);
    await writeFile(paths.resolvConfFile, files.resolvConf);
    await mkdir(paths.containersDir);

    // Host-network pods share the node's UTS namespace (and so its hostname), as kubelet expects.
    const ownUts = !pod.hostNetwork;
    const pinned = await timed(sandbox.log, 'runc.pin-namespaces', () =>
      pinPodNamespaces(paths.nsDir, {
        ipc: !pod.hostIpc,
        uts: ownUts,
        ...(ownUts ? { hostname: podHostname(pod, host) } : {}),
      }),
    );
    const state: RuncPodState = { ipcPath: pinned.ipcPath ?? null, utsPath: pinned.utsPath ?? null };
    sandbox.record.kindState = state;

    await mkdir(paths.shmDir);
    if (!pod.hostIpc) await timed(sandbox.log, 'runc.mount-shm', () => mountOne(SHM_MOUNT, paths.shmDir));
  }

  async start(): Promise<{ pid: number }> {
    return { pid: 0 };
  }

  async stop(): Promise<void> {
    // Nothing runs for a runc pod besides its containers, which core has stopped already.
  }

  async recover(sandbox: SandboxContext): Promise<void> {
    const state = sandbox.record.kindState as RuncPodState | null;
    for (const path of [state?.ipcPath, state?.utsPath]) {
      if (path && !(await isMountPoint(path))) {
        throw failedPrecondition(`recover sandbox ${sandbox.record.id}: its pinned namespace ${path} is gone`);
      }
    }
  }

  async destroy(sandbox: SandboxContext): Promise<void> {
    const paths = podPaths(sandbox.dir);
    await unpinPodNamespaces(paths.nsDir);
    await unmountRecursive(sandbox.dir);
  }
}

class RuncTasks implements TaskDriver {
  constructor(
    private readonly runtime: OciRuntime,
    private readonly reaper: Reaper,
  ) {}

  private dirs(sandbox: SandboxContext, container: ContainerRecord) {
    const dir = join(podPaths(sandbox.dir).containersDir, container.id);
    return { dir, rootfs: join(dir, 'rootfs'), pidFile: join(dir, 'init.pid') };
  }

  async create(sandbox: SandboxContext, container: ContainerRecord): Promise<CreatedProcess> {
    const { dir, rootfs, pidFile } = this.dirs(sandbox, container);
    const log = sandbox.log.child({ container: container.id });
    await mkdir(rootfs, { recursive: true, mode: 0o700 });
    const spec = JSON.parse(await readFile(join(container.bundle, 'config.json'), 'utf8')) as PodContainerSpec;
    if (container.rootfs.length > 0) {
      await timed(log, 'runc.mount-rootfs', () => mountAll(container.rootfs, rootfs));
    }
    // With no mounts, containerd has prepared the rootfs inside the bundle itself.
    const rootPath = container.rootfs.length > 0 ? rootfs : join(container.bundle, spec.root?.path ?? 'rootfs');
    const pod = podPaths(sandbox.dir);
    const podState = sandbox.record.kindState as RuncPodState;
    const layout: PodLayout = {
      pod: sandbox.record.pod,
      netnsPath: sandbox.record.netnsPath,
      ipcPath: podState.ipcPath,
      utsPath: podState.utsPath,
      hostnameFile: pod.hostnameFile,
      hostsFile: pod.hostsFile,
      resolvConfFile: pod.resolvConfFile,
      shmDir: sandbox.record.pod.hostIpc ? '/dev/shm' : pod.shmDir,
    };
    await writeFile(join(dir, 'config.json'), JSON.stringify(podContainerSpec(spec, rootPath, layout)));

    const stdio = openContainerStdio(container.stdio);
    let pid: number;
    try {
      pid = await timed(log, 'oci.create', () => this.runtime.create(container.id, dir, { pidFile, stdio: stdio.fds }));
    } finally {
      // The container's init holds its own copies now; ours would keep the FIFOs open forever.
      stdio.close();
    }
    const initStartTime = readProcStat(pid)?.startTime;
    if (initStartTime) container.kindState = { initStartTime } satisfies RuncContainerState;
    return { pid, exited: this.reaper.watch(pid).then((e) => ({ exitStatus: e.exitStatus, exitedAt: e.exitedAt.toISOString() })) };
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
    await timed(log, 'oci.delete', () => this.runtime.delete(container.id, { force: true }));
    await timed(log, 'runc.unmount-rootfs', () => unmountRecursive(rootfs));
    await rm(dir, { recursive: true, force: true });
  }

  async pids(_sandbox: SandboxContext, container: ContainerRecord): Promise<number[]> {
    return this.runtime.ps(container.id);
  }

  async reattach(sandbox: SandboxContext, container: ContainerRecord): Promise<ExitInfo> {
    const log = sandbox.log.child({ container: container.id, pid: container.pid });
    const state = container.kindState as RuncContainerState | null;
    // The pid alone could name another process by now: its start time tells them apart.
    if (!state || !isSameProcessRunning(container.pid, state.initStartTime)) {
      log.warn('container exited while kuasard was down; its exit status is lost, reporting 255');
      return { exitStatus: UNKNOWN_EXIT_STATUS, exitedAt: nowIso() };
    }
    // Still running, but no longer our child: we will learn when it ends, not how.
    const exit = await this.reaper.watchForeign(container.pid);
    log.warn('container exited after a kuasard restart; its exit status cannot be known, reporting 255');
    return { exitStatus: exit.exitStatus, exitedAt: exit.exitedAt.toISOString() };
  }
}

async function hostFacts(): Promise<HostFacts> {
  const read = (path: string) => readFile(path, 'utf8').catch(() => '');
  return { hostname: osHostname(), hosts: await read('/etc/hosts'), resolvConf: await read('/etc/resolv.conf') };
}
