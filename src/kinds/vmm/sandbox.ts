// One vmm pod: a QEMU VM with its own guest kernel, in the pod's network namespace, whose agent
// (PID 1 in the guest) runs the pod's containers. The VM is the pod: when QEMU exits or the
// channel to the agent breaks on its own, every container of the pod has ended with it. The VM
// outlives kuasard: a restarted kuasard reconnects to its agent, or ends a VM it cannot reach.
import { readFile, rm } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { failedPrecondition, invalidArgument } from '../../base/errors.js';
import type { CgroupMetrics } from '../../base/metrics.js';
import type { SavedState } from '../../base/model.js';
import { podHostname } from '../../base/pod-files.js';
import { timed } from '../../base/stages.js';
import { imagePaths } from '../../guest/image/layout.js';
import type { ContainerContext, KindSandbox, PodNamespaces, SandboxContext, SandboxUpdate } from '../../kind-api/kind.js';
import { removeCgroup } from '../../linux/cgroups.js';
import type { KeptDescriptors } from '../../linux/fd-keeper.js';
import { checkHostname } from '../../linux/namespaces.js';
import type { Reaper } from '../../linux/reaper.js';
import { podCgroupMetrics } from '../../oci-kind/pod-cgroup.js';
import { timedAgentReady } from './boot-stages.js';
import { AgentChannel } from './channel.js';
import { debugExecInGuest } from './debug-exec.js';
import { connectTaps, disconnectTaps, readPodNetwork, type PodInterface } from './network.js';
import { VmmContainer, type VmmPodView } from './container.js';
import { podState, type VmmPodState } from './pod-state.js';
import { BASE_KERNEL_PARAMS, type VmLayout } from './qemu-args.js';
import type { VmmConfig } from './config.js';
import type { GuestClocks } from './guest-clocks.js';
import { GUEST_SHARE, SandboxShare } from './share.js';
import { sizeUnderPodLimit, vmCgroupsPath } from './vm-cgroup.js';
import { killGone, runsVm, Vm, type VmProcess } from './vm.js';

/** What the kind shares with each of its pods. */
export interface VmmEnvironment {
  config: VmmConfig;
  /** The accelerator the kind chose at start (a KVM probe, or the configuration). */
  accel: 'kvm' | 'tcg';
  reaper: Reaper;
  /** Keeps each running guest's clock on the host's. */
  clocks: GuestClocks;
  /** Where the stdio FIFOs of the pods' processes are kept open across a restart. */
  kept: KeptDescriptors;
}

type PodNetwork = Awaited<ReturnType<typeof readPodNetwork>>;

/** A pod on the node's network: its VM has no NIC (the node's interfaces cannot be given to it). */
const NO_NETWORK: PodNetwork = { interfaces: [], routes: [] };

/** The virtio-serial port the agent serves on, by its name in the guest. */
const AGENT_PORT_NAME = 'agent.0';
const MIB = 1024 * 1024;

/** The files of a pod's VM in its sandbox directory (short names: they are unix socket paths). */
export function vmFiles(dir: string) {
  return {
    agentSocket: join(dir, 'agent'),
    qmpSocket: join(dir, 'qmp'),
    pidFile: join(dir, 'qemu.pid'),
    consoleLog: join(dir, 'console.log'),
    shareDir: join(dir, 'shared'),
  };
}

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

  private async reconnect(process: VmProcess): Promise<void> {
    const { log } = this.context;
    const vm = await Vm.adopt(process, vmName(this.context.record.id), this.files.qmpSocket, this.env.reaper);
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

  /** The VM's size: the pod's limits when kubelet gives them, else the configured defaults; plus the guest's overhead. */
  private size(): { vcpus: number; memoryMib: number } {
    const { config } = this.env;
    const resources = this.context.record.pod.resources;
    const vcpus =
      resources && resources.cpuQuotaUs > 0 && resources.cpuPeriodUs > 0
        ? Math.ceil(resources.cpuQuotaUs / resources.cpuPeriodUs)
        : config.default_vcpus;
    const podMib = resources && resources.memoryLimitBytes > 0 ? Math.ceil(resources.memoryLimitBytes / MIB) : config.default_memory_mib;
    return { vcpus: Math.min(vcpus, 64), memoryMib: podMib + config.memory_overhead_mib };
  }

  private layout(interfaces: readonly PodInterface[], size: { vcpus: number; memoryMib: number }): VmLayout {
    const { config, accel } = this.env;
    const image = imagePaths(config.image_dir);
    return {
      name: vmName(this.context.record.id),
      machine: config.machine,
      accel,
      ...size,
      kernel: image.kernel,
      initrd: image.initrd,
      rootImage: image.rootfs,
      kernelParams: [
        ...BASE_KERNEL_PARAMS,
        `kuasar.agent_port=${AGENT_PORT_NAME}`,
        `kuasar.log_level=${config.agent_log_level}`,
        ...config.kernel_params,
      ],
      nics: interfaces.map(({ tap, mac }) => ({ tap, mac })),
      share: { dir: this.files.shareDir, tag: GUEST_SHARE.tag },
      agent: { portName: AGENT_PORT_NAME, socket: this.files.agentSocket },
      qmpSocket: this.files.qmpSocket,
      consoleLog: this.files.consoleLog,
      pidFile: this.files.pidFile,
    };
  }

  /**
   * Controller Start: the pod's interfaces get their taps, the VM boots on them, its agent answers
   * and sets the pod up in the guest (names, files, namespaces, network, clock).
   */
  async start(): Promise<{ pid: number }> {
    const { log, record } = this.context;
    const netnsPath = record.pod.hostNetwork ? '' : record.netnsPath;
    const network = netnsPath ? await timed(log, 'vmm.read-network', () => readPodNetwork(netnsPath)) : NO_NETWORK;
    const layout = this.layout(network.interfaces, await sizeUnderPodLimit(this.size(), this.context, this.env));
    for (const socket of [layout.agent.socket, layout.qmpSocket]) await rm(socket, { force: true });
    // Recorded before they are made: a failure here, or a crash, finds what to remove.
    this.pod = { vm: null, taps: network.interfaces.map(({ name, tap }) => ({ name, tap })), guestNamespaces: null };
    try {
      await timed(log, 'vmm.connect-taps', () => connectTaps(netnsPath, network.interfaces));
      const vm = await timed(log, 'vmm.qemu-start', () =>
        Vm.launch(layout, { qemu: this.env.config.qemu, netnsPath, cgroupsPath: vmCgroupsPath(record), reaper: this.env.reaper, log }),
      );
      this.vm = vm;
      this.pod = { ...this.pod, vm: vm.process };
      this.watchVm(vm);
      const { channel, check } = await timedAgentReady(log, layout.consoleLog, () =>
        AgentChannel.open(layout.agent.socket, {
          timeoutMs: this.env.config.boot_timeout_ms,
          vmEnded: vm.ended,
          describeEnd: () => `the guest's console is in ${layout.consoleLog}`,
        }),
      );
      this.channel = channel;
      this.watchChannel(channel);
      log.info({ pid: vm.process.pid, accel: this.env.accel, kernel: check.kernelRelease, bootId: check.bootId }, 'VM ready');
      await timed(log, 'vmm.setup-sandbox', () => this.setUpGuest(channel, network));
      return { pid: vm.process.pid };
    } catch (err) {
      log.warn({ err, console: await consoleTail(layout.consoleLog) }, 'the VM did not come up; ending it');
      await this.endVm();
      throw err;
    }
  }

  private async setUpGuest(channel: AgentChannel, network: PodNetwork): Promise<void> {
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
      interfaces: network.interfaces.map(({ name, mac, mtu, addresses }) => ({ name, mac, mtu, addresses })),
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

/** The last lines the guest printed on its console, for a log line about a VM that failed. */
async function consoleTail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-10).join('\n');
}

/**
 * Ends the VM a sandbox directory's pidfile names, when that process still runs QEMU for this
 * sandbox (a pid alone may have been reused): a daemon that died, or a restart that cannot
 * reconnect, leaves it. Idempotent.
 */
export async function endLostVm(context: SandboxContext, reaper: Reaper): Promise<void> {
  const { pidFile } = vmFiles(context.dir);
  const pid = Number.parseInt(await readFile(pidFile, 'utf8').catch(() => ''), 10);
  if (!(pid > 1) || !(await runsVm(pid, vmName(context.record.id)))) return;
  context.log.warn({ pid }, 'ending a VM no run of kuasard can reach');
  const ended = reaper.watchForeign(pid);
  killGone(pid);
  await ended;
}

/** Releases everything a sandbox directory may hold when there is no object for it. */
export async function releaseLostPod(context: SandboxContext, reaper: Reaper): Promise<void> {
  await endLostVm(context, reaper);
  await removeCgroup(vmCgroupsPath(context.record));
  await new SandboxShare(vmFiles(context.dir).shareDir).destroy();
}
