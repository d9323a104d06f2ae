// Where a pod's VM is charged on the host, and how big it may be there. QEMU runs in a cgroup of
// its own below the pod's (CRI's cgroup_parent, where kubelet puts a pod's limits; at the top of
// each hierarchy for a pod without one), from its first instruction (vm.ts): the VM's memory and
// CPU time are the pod's, in the figures containerd reads for pod stats and against its limits.
//
// The VM's RAM, once the guest has touched it (its page cache fills it sooner or later), is QEMU's
// memory on the host, and QEMU needs some of its own besides. Were the two more than the memory
// limit that holds for the pod's cgroup, the host's OOM killer would end QEMU, and the whole pod
// with it. So the VM is sized to fit under that limit, less QEMU's own (`qemu_overhead_mib`, and
// under TCG its translation buffer):
// its containers then meet the limit inside the guest, whose OOM killer ends one process, which
// CRI reports OOMKilled. For the containers to keep their whole limits, the pod's RuntimeClass
// overhead must cover the guest's (`memory_overhead_mib`) and QEMU's, as kubelet adds it to the
// pod's cgroup.
import { failedPrecondition } from '../../base/errors.js';
import type { SandboxRecord } from '../../base/model.js';
import type { SandboxContext } from '../../kind-api/kind.js';
import { readEffectiveMemoryLimit } from '../../linux/cgroup-stats.js';
import { hostCgroupLayout } from '../../linux/cgroups.js';
import type { VmmConfig } from './config.js';
import { TCG_TRANSLATION_BUFFER_MIB } from './qemu-args.js';

const MIB = 1024 * 1024;

/** The VM's cgroup: below the pod's cgroup parent, named after the sandbox so it can be found again. */
export function vmCgroupsPath(record: Readonly<SandboxRecord>): string {
  return `${record.pod.cgroupParent.replace(/\/+$/, '')}/kuasar-vmm-${record.id}`;
}

export interface VmMemoryBudget {
  /** QEMU's own memory besides the guest's RAM, MiB. */
  qemuOverheadMib: number;
  /** The least RAM a guest boots and serves in (its kernel and agent), MiB. */
  guestMinimumMib: number;
}

/**
 * The VM's RAM in MiB: `wantedMib`, or less when that and QEMU's own would not fit under
 * `limitBytes` (undefined: no limit holds). A limit too small for even the guest's minimum is
 * refused: a VM that cannot boot, or that the host kills as the guest boots, serves nobody.
 */
export function fitVmMemory(wantedMib: number, limitBytes: bigint | undefined, budget: VmMemoryBudget): number {
  if (limitBytes === undefined) return wantedMib;
  const limitMib = Number(limitBytes / BigInt(MIB));
  const room = limitMib - budget.qemuOverheadMib;
  if (room < budget.guestMinimumMib) {
    throw failedPrecondition(
      `the pod's memory limit (${limitMib} MiB) cannot hold a VM: its guest needs ${budget.guestMinimumMib} MiB and QEMU ` +
        `${budget.qemuOverheadMib} MiB besides; give the pod's RuntimeClass a memory overhead of at least ` +
        `${budget.guestMinimumMib + budget.qemuOverheadMib} MiB`,
    );
  }
  return Math.min(wantedMib, room);
}

/** The memory limit that holds for the pod's cgroup (its own or an ancestor's), or undefined. */
async function podMemoryLimit(record: Readonly<SandboxRecord>): Promise<bigint | undefined> {
  const parent = record.pod.cgroupParent;
  if (!parent) return undefined;
  return readEffectiveMemoryLimit(parent, await hostCgroupLayout());
}

export interface VmSize {
  vcpus: number;
  memoryMib: number;
}

/** `wanted`, its RAM fitted under the memory limit that holds for the pod's cgroup (logged when it is). */
export async function sizeUnderPodLimit(
  wanted: VmSize,
  context: Pick<SandboxContext, 'record' | 'log'>,
  env: { config: VmmConfig; accel: 'kvm' | 'tcg' },
): Promise<VmSize> {
  const limit = await podMemoryLimit(context.record);
  const memoryMib = fitVmMemory(wanted.memoryMib, limit, {
    qemuOverheadMib: env.config.qemu_overhead_mib + (env.accel === 'tcg' ? TCG_TRANSLATION_BUFFER_MIB : 0),
    guestMinimumMib: env.config.memory_overhead_mib,
  });
  if (memoryMib < wanted.memoryMib) {
    context.log.info({ wantedMib: wanted.memoryMib, memoryMib, podLimit: String(limit) }, "VM sized to fit under the pod's memory limit");
  }
  return { ...wanted, memoryMib };
}
