// One vmm pod: a QEMU VM with its own guest kernel, in the pod's network namespace, whose agent
// (PID 1 in the guest) runs the pod's containers. The VM is the pod: when QEMU exits or the
// channel to the agent breaks on its own, every container of the pod has ended with it. The VM
// outlives kuasard: a restarted kuasard reconnects to its agent, or ends a VM it cannot reach.
import { readdir, readFile, readlink, rm } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { failedPrecondition, invalidArgument } from '../../base/errors.js';
import type { CgroupMetrics } from '../../base/metrics.js';
import type { PodSpec, SavedState } from '../../base/model.js';
import { podHostname } from '../../base/pod-files.js';
import { timed } from '../../base/stages.js';
import type { ContainerContext, KindSandbox, PodNamespaces, SandboxContext, SandboxUpdate } from '../../kind-api/kind.js';
import { removeCgroup } from '../../linux/cgroups.js';
import { checkHostname } from '../../linux/namespaces.js';
import type { Reaper } from '../../linux/reaper.js';
import { podCgroupMetrics } from '../../oci-kind/pod-cgroup.js';
import { bootVm, consoleTail, vmFiles, vmLayout } from './boot.js';
import { AgentChannel } from './channel.js';
import { debugExecInGuest } from './debug-exec.js';
import { connectTaps, disconnectTaps, readPodNetwork } from './network.js';
import { VmmContainer, type VmmPodView } from './container.js';
import { podState, type VmmPodState } from './pod-state.js';
import type { VmmConfig } from './config.js';
import { GUEST_SHARE, SandboxShare } from './share.js';
import { fitsUnderPodLimit, sizeUnderPodLimit, vmCgroupsPath, type VmSize } from './vm-cgroup.js';
import { endVmByPidFile, vmNameOf, Vm, type VmProcess } from './vm.js';
import type { ClaimableVm, VmmEnvironment, WarmVmPool } from './environment.js';
import { WARM_VM_NAME_PREFIX } from './warm-vm.js';

type PodNetwork = Awaited<ReturnType<typeof readPodNetwork>>;

/** A pod on the node's network: its VM has no NIC (the node's interfaces cannot be given to it). */
const NO_NETWORK: PodNetwork = { interfaces: [], routes: [] };

const MIB = 1024 * 1024;

/** The name QEMU runs under, by which a lost VM is recognised. */
export const vmName = (sandboxId: string): string => `kuasar-vmm-${sandboxId}`;

export class VmmSandbox implements KindSandbox {
  private readonly files: ReturnType<typeof vmFiles>;
  private readonly share: SandboxShare;
  private vm: Vm | null = null;
  private channel: AgentChannel | null = null;
  /** Set once Stop or Shutdown ends the VM: its end is then no news. */
  private stopping = false;
  private ending: Promise<void> | null = null;

  private constructor(
    private readonly env: VmmEnvironment,
    private readonly context: SandboxContext,
    private pod: VmmPodState,
  ) {
    this.files = vmFiles(context.dir);
    this.share = new SandboxShare(this.files.shareDir);
  }

  /** Controller Create: the share with the pod's files; nothing runs yet. Refuses what a VM cannot give. */
  static async create(env: VmmEnvironment, context: SandboxContext): Promise<VmmSandbox> {
    const { pod } = context.record;
    if (pod.hostname) checkHostname(pod.hostname);
    if (pod.hostIpc || pod.pidMode === 'node') {
      throw invalidArgument("a vmm pod cannot share the node's IPC or PID namespace: its containers run in their own kernel");
    }
    const sandbox = new VmmSandbox(env, context, { vm: null, taps: [], guestNamespaces: null });
    await sandbox.share.prepare(pod);
    return sandbox;
  }

  /**
   * After a restart: the pod's VM, still running, is taken over (its QEMU watched again, its agent
   * reconnected, the guest's clock set again). A VM that has gone, or whose agent does not answer
   * within `reconnect_timeout_ms`, is ended (never leaked) and the sandbox reported as one that
   * cannot be served. A VM left running by a Stop that the daemon died in is ended too.
   */
  static async restore(env: VmmEnvironment, context: SandboxContext, saved: SavedState | null): Promise<VmmSandbox> {
    const { id, phase } = context.record;
    const state = podState.load(saved, `recover sandbox ${id}`);
    const sandbox = new VmmSandbox(env, context, state);
    if (!state.vm) return sandbox;
    if (phase !== 'ready') {
      await sandbox.endVm();
      return sandbox;
    }
    try {
      await timed(context.log, 'vmm.reconnect', () => sandbox.reconnect(state.vm!));
    } catch (err) {
      context.log.warn({ err, console: await consoleTail(sandbox.files.consoleLog) }, 'cannot take over the VM; ending it');
      await sandbox.endVm();
      throw failedPrecondition(`recover sandbox ${id}: ${(err as Error).message}; its VM was ended`);
    }
    return sandbox;
  }

  private async reconnect(process: VmProcess & { name?: string }): Promise<void> {
    const { log } = this.context;
    const vm = await Vm.adopt(process, process.name ?? vmName(this.context.record.id), this.files.qmpSocket, this.env.reaper);
    this.vm = vm;
    this.watchVm(vm);
    const { channel, check } = await AgentChannel.reconnect(this.files.agentSocket, {
      timeoutMs: this.env.config.reconnect_timeout_ms,
      vmEnded: vm.ended,
      describeEnd: () => `the guest's console is in ${this.files.consoleLog}`,
    });
    this.channel = channel;
    this.watchChannel(channel);
    // Nobody set the guest's clock while kuasard was down, and an emulated guest's clock drifts.
    await this.keepClock(channel);
    log.info({ pid: process.pid, uptimeSeconds: Math.round(check.uptimeSeconds), bootId: check.bootId }, 'VM taken over');
  }

  state(): SavedState {
    return podState.save(this.pod);
  }

  taskAddress(): undefined {
    return undefined;
  }

  /**
   * Controller Start: the pod's VM comes up, from the warm pool when one fits the pod, else booted
   * for it on taps made for its interfaces; its agent then sets the pod up in the guest (names,
   * files, namespaces, network, clock).
   */
  async start(): Promise<{ pid: number }> {
    const { log, record } = this.context;
    const netnsPath = record.pod.hostNetwork ? '' : record.netnsPath;
    const network = netnsPath ? await timed(log, 'vmm.read-network', () => readPodNetwork(netnsPath)) : NO_NETWORK;
    const size = await sizeUnderPodLimit(podVmSize(record.pod.resources, this.env.config), this.context, this.env);
    const { pool } = this.env;
    const startDone = pool?.startUnderWay();
    try {
      const warm = pool && (await this.warmVmFor(pool, network, size));
      if (warm) {
        try {
          return await this.startWarm(warm, network);
        } catch (err) {
          log.warn({ err, warmVm: warm.id }, 'the warm VM could not be handed over; ending it and booting one');
          await warm.end();
          await this.endVm();
          // A Start begins anew: the pod's files in a share of its own, and its VM's end is news again.
          await this.share.prepare(record.pod);
          this.stopping = false;
        }
      }
      return await this.startCold(network, size);
    } finally {
      startDone?.();
    }
  }

  /** A warm VM for this pod, or undefined (logged with why) when it must boot its own. */
  private async warmVmFor(pool: WarmVmPool, network: PodNetwork, size: VmSize): Promise<ClaimableVm | undefined> {
    const why = await this.whyNotWarm(pool, network, size);
    if (why) {
      this.context.log.info({ why }, 'the VM boots cold');
      return undefined;
    }
    const vm = pool.take();
    if (!vm) this.context.log.info({ why: 'the warm pool is empty' }, 'the VM boots cold');
    return vm;
  }

  private async whyNotWarm(pool: WarmVmPool, network: PodNetwork, size: VmSize): Promise<string | undefined> {
    // A warm VM has one NIC, made before the pod's interfaces were known.
    if (this.context.record.pod.hostNetwork) return "the pod is on the node's network";
    if (network.interfaces.length !== 1) return `the pod has ${network.interfaces.length} network interfaces, a warm VM one`;
    const warm = pool.size;
    if (size.vcpus > warm.vcpus || size.memoryMib > warm.memoryMib) {
      return `the pod needs ${size.vcpus} vCPUs and ${size.memoryMib} MiB, a warm VM has ${warm.vcpus} and ${warm.memoryMib} MiB`;
    }
    if (!(await fitsUnderPodLimit(warm, this.context.record, this.env)))
      return "a warm VM's memory does not fit under the pod's memory limit";
    return undefined;
  }

  /** The warm VM becomes this pod's: its pieces moved to the pod, then the guest set up for it. */
  private async startWarm(warm: ClaimableVm, network: PodNetwork): Promise<{ pid: number }> {
    const { log, record } = this.context;
    const nic = network.interfaces[0]!;
    // Recorded before the tap moves: a failure or a crash finds what to remove.
    this.pod = { vm: null, taps: [{ name: nic.name, tap: nic.tap }], guestNamespaces: null };
    const claimed = await timed(log, 'vmm.claim-warm', () => warm.handOver(record, this.context.dir, nic));
    this.vm = claimed.vm;
    this.pod = { ...this.pod, vm: { ...claimed.vm.process, name: claimed.name } };
    this.watchVm(claimed.vm);
    this.channel = claimed.channel;
    this.watchChannel(claimed.channel);
    await this.share.prepare(record.pod);
    log.info({ pid: claimed.vm.process.pid, accel: this.env.accel, warmVm: warm.id }, 'VM ready');
    await timed(log, 'vmm.setup-sandbox', () => this.setUpGuest(claimed.channel, network, claimed.guestMac));
    return { pid: claimed.vm.process.pid };
  }

  /** The pod's interfaces get their taps, and a VM boots on them. */
  private async startCold(network: PodNetwork, size: VmSize): Promise<{ pid: number }> {
    const { log, record } = this.context;
    const netnsPath = record.pod.hostNetwork ? '' : record.netnsPath;
    const name = vmName(record.id);
    const layout = vmLayout(this.env, { name, files: this.files, size, nics: network.interfaces.map(({ tap, mac }) => ({ tap, mac })) });
    for (const socket of [layout.agent.socket, layout.qmpSocket]) await rm(socket, { force: true });
    // Recorded before they are made: a failure here, or a crash, finds what to remove.
    this.pod = { vm: null, taps: network.interfaces.map(({ name, tap }) => ({ name, tap })), guestNamespaces: null };
    try {
      await timed(log, 'vmm.connect-taps', () => connectTaps(netnsPath, network.interfaces));
      const { channel, check } = await bootVm(layout, {
        env: this.env,
        netnsPath,
        cgroupsPath: vmCgroupsPath(record),
        timeoutMs: this.env.config.boot_timeout_ms,
        log,
        launched: (vm) => {
          this.vm = vm;
          this.pod = { ...this.pod, vm: { ...vm.process, name } };
          this.watchVm(vm);
        },
      });
      this.channel = channel;
      this.watchChannel(channel);
      log.info({ pid: this.vm!.process.pid, accel: this.env.accel, kernel: check.kernelRelease, bootId: check.bootId }, 'VM ready');
      await timed(log, 'vmm.setup-sandbox', () => this.setUpGuest(channel, network));
      return { pid: this.vm!.process.pid };
    } catch (err) {
      log.warn({ err, console: await consoleTail(layout.consoleLog) }, 'the VM did not come up; ending it');
      await this.endVm();
      throw err;
    }
  }

  /** SetupSandbox, SetupNetwork and the clock; `guestMac` is the NIC's MAC until now when it was not the pod's (a warm VM). */
  private async setUpGuest(channel: AgentChannel, network: PodNetwork, guestMac = ''): Promise<void> {
    const { pod, id } = this.context.record;
    const read = (path: string) => readFile(path, 'utf8');
    const namespaces = await channel.agent.setupSandbox({
      sandboxId: id,
      hostname: podHostname(pod, { hostname: osHostname(), hosts: '', resolvConf: '' }),
      hosts: await read(this.share.files.hostsFile),
      resolvConf: await read(this.share.files.resolvConfFile),
      sharedTag: GUEST_SHARE.tag,
      sharedMountPoint: GUEST_SHARE.mountPoint,
      sharePidNamespace: pod.pidMode === 'pod',
      sysctls: pod.sysctls,
    });
    this.pod = {
      ...this.pod,
      guestNamespaces: { ipc: namespaces.ipcNamespace, uts: namespaces.utsNamespace, pid: namespaces.pidNamespace || null },
    };
    await channel.agent.setupNetwork({
      interfaces: network.interfaces.map(({ name, mac, mtu, addresses }) => ({ name, mac, mtu, addresses, guestMac })),
      routes: network.routes,
    });
    await this.keepClock(channel);
  }

  /** Sets the guest's clock now, and has the kind keep it on the host's until the VM ends. */
  private keepClock(channel: AgentChannel): Promise<void> {
    return this.env.clocks.keep(this.context.record.id, async () => {
      await channel.agent.syncClock({ hostTimeNs: BigInt(Date.now()) * 1_000_000n });
    });
  }

  private watchVm(vm: Vm): void {
    vm.ended.then(
      () => {
        if (!this.stopping && this.vm === vm) this.context.isolationEnded(`its VM (QEMU, pid ${vm.process.pid}) exited`);
      },
      () => {
        // The reaper stopped (daemon exit): the next run finds the VM by its state.
      },
    );
  }

  private watchChannel(channel: AgentChannel): void {
    channel.whenClosed.then((reason) => {
      if (this.stopping || this.channel !== channel) return;
      this.context.isolationEnded(`the channel to its VM's agent closed (${reason.message})`);
      // A VM whose agent cannot be reached any more serves nobody.
      this.endVm().catch((err: unknown) => this.context.log.error({ err }, 'ending the VM failed'));
    });
  }

  /**
   * Ends the VM and the channel, then removes the taps. Idempotent, and callers that come while
   * it runs (a Stop while the channel's close ends the VM) wait for the same end.
   */
  private endVm(): Promise<void> {
    this.ending ??= this.endVmOnce().finally(() => {
      this.ending = null;
    });
    return this.ending;
  }

  private async endVmOnce(): Promise<void> {
    this.stopping = true;
    this.env.clocks.forget(this.context.record.id);
    this.channel?.close();
    this.channel = null;
    if (this.vm) await this.vm.stop(this.env.config.stop_timeout_ms, this.context.log);
    // Also when no VM was known: a launch that failed half-way (its time-out ended the launcher,
    // not the daemonized QEMU) leaves one that only the pid file names.
    else await endLostVm(this.context, this.env.reaper);
    await removeCgroup(vmCgroupsPath(this.context.record));
    this.vm = null;
    if (this.pod.taps.length > 0) await disconnectTaps(this.context.record.netnsPath, this.pod.taps);
    this.pod = { vm: null, taps: [], guestNamespaces: null };
  }

  /** Controller Stop, once every container has stopped: the VM ends. */
  async stop(): Promise<void> {
    await timed(this.context.log, 'vmm.stop-vm', () => this.endVm());
  }

  async destroy(): Promise<void> {
    await this.endVm();
    await this.share.destroy();
  }

  /** The pod's own cgroup (CRI's cgroup_parent), QEMU's included, as containerd reads it for pod stats. */
  async metrics(): Promise<CgroupMetrics> {
    return podCgroupMetrics(this.context.record);
  }

  async update(update: SandboxUpdate): Promise<void> {
    this.context.log.debug({ fields: update.fields }, 'sandbox update: nothing of a vmm pod changes after it started');
  }

  /** Only the network namespace is on the host; the others live in the guest. */
  namespaces(): PodNamespaces {
    const { record } = this.context;
    return !record.pod.hostNetwork && record.netnsPath ? { network: record.netnsPath } : {};
  }

  private view(): VmmPodView {
    const { id } = this.context.record;
    if (!this.channel || !this.pod.guestNamespaces) throw failedPrecondition(`sandbox ${id} has no running VM (not started, or stopped)`);
    return {
      pod: this.context.record.pod,
      agent: this.channel.agent,
      share: this.share,
      streams: this.context.streams,
      namespaces: this.pod.guestNamespaces,
      keptAs: (process) => ({ keeper: this.env.kept, name: `${id}/${process}` }),
    };
  }

  createContainer(container: ContainerContext): Promise<VmmContainer> {
    return VmmContainer.create(this.view(), container);
  }

  async restoreContainer(container: ContainerContext): Promise<VmmContainer> {
    return VmmContainer.restore(this.view(), container);
  }

  /** `kuasar exec`: a command in the guest, outside the containers (debug-exec.ts). */
  readonly debugExec: KindSandbox['debugExec'] = (request) => debugExecInGuest(this.channel, this.context.record.id, request);
}

/**
 * Ends the VM a sandbox directory's pid file names, when that process still runs this sandbox's
 * QEMU: a daemon that died, or a restart that cannot reconnect, leaves it. The process runs under
 * the sandbox's VM name, or under a warm VM's name while it holds a file of this directory (its
 * console log: a warm VM's files were moved here when the pod claimed it). Idempotent.
 */
export async function endLostVm(context: SandboxContext, reaper: Reaper): Promise<void> {
  const isOurs = async (pid: number) => {
    const name = await vmNameOf(pid);
    if (name === vmName(context.record.id)) return true;
    return name?.startsWith(WARM_VM_NAME_PREFIX) === true && (await holdsFileIn(pid, context.dir));
  };
  const pid = await endVmByPidFile(vmFiles(context.dir).pidFile, isOurs, reaper);
  if (pid) context.log.warn({ pid }, 'ended a VM no run of kuasard can reach');
}

/** Whether the process `pid` has a file below `dir` open. */
async function holdsFileIn(pid: number, dir: string): Promise<boolean> {
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => []);
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
    if (target.startsWith(`${dir}/`)) return true;
  }
  return false;
}

/** The VM's size: the pod's limits when kubelet gives them, else the configured defaults; plus the guest's overhead. */
export function podVmSize(resources: PodSpec['resources'], config: VmmConfig): VmSize {
  const vcpus =
    resources && resources.cpuQuotaUs > 0 && resources.cpuPeriodUs > 0
      ? Math.ceil(resources.cpuQuotaUs / resources.cpuPeriodUs)
      : config.default_vcpus;
  const podMib = resources && resources.memoryLimitBytes > 0 ? Math.ceil(resources.memoryLimitBytes / MIB) : config.default_memory_mib;
  return { vcpus: Math.min(vcpus, 64), memoryMib: podMib + config.memory_overhead_mib };
}

/** Releases everything a sandbox directory may hold when there is no object for it. */
export async function releaseLostPod(context: SandboxContext, reaper: Reaper): Promise<void> {
  await endLostVm(context, reaper);
  await removeCgroup(vmCgroupsPath(context.record));
  await new SandboxShare(vmFiles(context.dir).shareDir).destroy();
}
