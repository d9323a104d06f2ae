// One VM of the warm pool: booted before any pod asked for it, its agent answering, in a network
// namespace of its own (one tap, whose frames go nowhere yet), a cgroup of its own at the least CPU
// weight, and a fresh, empty share. Its files live in <kind dir>/.warm/<id>. When a pod claims it,
// `handOver` gives the pod its pieces: the files are renamed into the sandbox's directory (QEMU
// holds its sockets, pid file, console and 9p root by what they are, not by their paths), the tap
// moves into the pod's namespace (QEMU holds its descriptor), QEMU moves into the pod's cgroup; what
// is left of the warm VM (its namespace, cgroup, directory) is removed. It is never given back.
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { CheckResponse } from '../../api/kuasar/agent/v1/agent_pb.js';
import type { SandboxRecord } from '../../base/model.js';
import { removeCgroup } from '../../linux/cgroups.js';
import { createPinnedNetns, removePinnedNetns } from '../../linux/netns.js';
import { bootVm, consoleTail, MOVABLE_VM_FILES, vmFiles, vmLayout, type VmFiles } from './boot.js';
import type { AgentChannel } from './channel.js';
import { makeLoneTap, moveTapToPod, tapName, type PodInterface } from './network.js';
import type { ClaimedVm, VmmEnvironment } from './environment.js';
import { makeWarmVmCgroup, moveWarmVmToPod, removeWarmCgroupParent, warmVmCgroupsPath, type VmSize } from './vm-cgroup.js';
import { endVmByPidFile, runsVm, type Vm } from './vm.js';
import type { PoolVm } from './warm-pool.js';

/** The name a warm VM's QEMU runs under; it keeps it after a pod claims it. */
export const WARM_VM_NAME_PREFIX = 'kuasar-vmm-warm-';

/** The directory of the warm VMs below the kind's: a name no sandbox id can have, which the engine leaves alone. */
export const WARM_DIR = '.warm';

/** The one tap of a warm VM, by the name the pod's first interface's tap has (network.ts), so that it moves in as it is. */
const WARM_TAP = tapName(0);

/** A random MAC for the NIC until the pod's is known: locally administered, unicast. */
export function placeholderMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = (bytes[0]! & 0xfe) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

export class WarmVm implements PoolVm {
  readonly name: string;
  readonly files: VmFiles;
  readonly guestMac = placeholderMac();
  private vm: Vm | null = null;
  private channel: AgentChannel | null = null;

  private constructor(
    readonly id: string,
    private readonly dir: string,
    readonly size: VmSize,
    private readonly env: VmmEnvironment,
    private readonly log: Logger,
  ) {
    this.name = `${WARM_VM_NAME_PREFIX}${id}`;
    this.files = vmFiles(dir);
  }

  private get cgroupsPath(): string {
    return warmVmCgroupsPath(this.env.config, this.id);
  }

  private get netnsFile(): string {
    return join(this.dir, 'netns');
  }

  /** A new warm VM below `kindDir`, not booted yet. */
  static prepare(kindDir: string, size: VmSize, env: VmmEnvironment, log: Logger): WarmVm {
    const id = randomBytes(8).toString('hex');
    return new WarmVm(id, join(kindDir, WARM_DIR, id), size, env, log.child({ warmVm: id }));
  }

  /** Settles once its QEMU has exited (never, before it was launched). */
  get ended(): Promise<void> {
    return this.vm?.ended ?? new Promise(() => undefined);
  }

  get pid(): number | undefined {
    return this.vm?.process.pid;
  }

  /** Boots it, within `timeoutMs`; on failure everything it made is removed again. */
  async boot(timeoutMs: number): Promise<CheckResponse> {
    try {
      await mkdir(this.files.shareDir, { recursive: true, mode: 0o700 });
      await createPinnedNetns(this.netnsFile);
      await makeLoneTap(this.netnsFile, WARM_TAP);
      await makeWarmVmCgroup(this.cgroupsPath);
      const layout = vmLayout(this.env, {
        name: this.name,
        files: this.files,
        size: this.size,
        nics: [{ tap: WARM_TAP, mac: this.guestMac }],
      });
      const booted = await bootVm(layout, {
        env: this.env,
        netnsPath: this.netnsFile,
        cgroupsPath: this.cgroupsPath,
        timeoutMs,
        log: this.log,
        launched: (vm) => {
          this.vm = vm;
        },
      });
      this.channel = booted.channel;
      return booted.check;
    } catch (err) {
      this.log.warn({ err, console: await consoleTail(this.files.consoleLog) }, 'a warm VM did not come up; ending it');
      await this.end();
      throw err;
    }
  }

  /** Whether its agent answers within `timeoutMs`. */
  async answers(timeoutMs: number): Promise<boolean> {
    if (!this.channel || !this.vm?.running) return false;
    return this.channel.agent.check({}, { timeoutMs }).then(
      () => true,
      () => false,
    );
  }

  /**
   * Gives the VM to the pod of `record`, whose directory is `sandboxDir`: its files are moved
   * there (the pod's share, made at Create with the pod's files only, is replaced by the VM's),
   * its tap joins the pod's interface `nic` in the pod's namespace, QEMU joins the pod's cgroup.
   * Whatever fails, the pod's caller ends the VM (its files are the pod's from the first step on).
   */
  async handOver(record: Readonly<SandboxRecord>, sandboxDir: string, nic: PodInterface): Promise<ClaimedVm> {
    const { vm, channel } = this;
    if (!vm || !channel) throw new Error(`warm VM ${this.id} was not booted`);
    const podFiles = vmFiles(sandboxDir);
    await rm(podFiles.shareDir, { recursive: true, force: true });
    for (const file of MOVABLE_VM_FILES) await rename(this.files[file], podFiles[file]);
    // QMP is reached by its socket's path: from now on, the pod's.
    this.vm = vm.movedTo(podFiles.qmpSocket);
    await moveTapToPod(this.netnsFile, record.netnsPath, { ...nic, tap: WARM_TAP });
    await moveWarmVmToPod(vm.process.pid, this.cgroupsPath, record);
    await this.removeLeftovers();
    return { vm: this.vm, channel, name: this.name, guestMac: this.guestMac };
  }

  /** Ends the VM (not claimed) and removes everything it had. Idempotent. */
  async end(): Promise<void> {
    this.channel?.close();
    this.channel = null;
    if (this.vm) await this.vm.stop(this.env.config.stop_timeout_ms, this.log);
    else await endVmByPidFile(this.files.pidFile, (pid) => runsVm(pid, this.name), this.env.reaper);
    this.vm = null;
    await this.removeLeftovers();
  }

  private async removeLeftovers(): Promise<void> {
    await removePinnedNetns(this.netnsFile);
    await removeCgroup(this.cgroupsPath);
    await rm(this.dir, { recursive: true, force: true });
  }

  /**
   * Ends the warm VMs an earlier run of kuasard left below `kindDir` (whether this run keeps a
   * pool or not): their QEMU, if it still runs, their namespaces, cgroups and files. They belong
   * to no pod: nothing of value is lost, and a new run boots its own.
   */
  static async endLeftovers(kindDir: string, env: VmmEnvironment, log: Logger): Promise<void> {
    for (const id of await readdir(join(kindDir, WARM_DIR)).catch(() => [])) {
      log.info({ warmVm: id }, 'ending a warm VM an earlier run of kuasard left');
      await new WarmVm(id, join(kindDir, WARM_DIR, id), { vcpus: 0, memoryMib: 0 }, env, log.child({ warmVm: id })).end();
    }
    await removeWarmCgroupParent(env.config);
  }
}
