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
import { readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { failedPrecondition } from '../../base/errors.js';
import type { SandboxRecord } from '../../base/model.js';
import type { SandboxContext } from '../../kind-api/kind.js';
import { readEffectiveMemoryLimit } from '../../linux/cgroup-stats.js';
import { cgroupPlaces, existingCgroupDirs, hostCgroupLayout, joinCgroup, makeCgroupDir } from '../../linux/cgroups.js';
import { hasErrnoCode } from '../../linux/libc/binding.js';
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

/** Whether a VM of `size` (a warm VM, made before the pod) fits under the memory limit that holds for the pod's cgroup. */
export async function fitsUnderPodLimit(
  size: VmSize,
  record: Readonly<SandboxRecord>,
  env: { config: VmmConfig; accel: 'kvm' | 'tcg' },
): Promise<boolean> {
  const limit = await podMemoryLimit(record);
  try {
    return fitVmMemory(size.memoryMib, limit, memoryBudget(env)) === size.memoryMib;
  } catch {
    return false;
  }
}

function memoryBudget(env: { config: VmmConfig; accel: 'kvm' | 'tcg' }): VmMemoryBudget {
  return {
    qemuOverheadMib: env.config.qemu_overhead_mib + (env.accel === 'tcg' ? TCG_TRANSLATION_BUFFER_MIB : 0),
    guestMinimumMib: env.config.memory_overhead_mib,
  };
}

/** `wanted`, its RAM fitted under the memory limit that holds for the pod's cgroup (logged when it is). */
export async function sizeUnderPodLimit(
  wanted: VmSize,
  context: Pick<SandboxContext, 'record' | 'log'>,
  env: { config: VmmConfig; accel: 'kvm' | 'tcg' },
): Promise<VmSize> {
  const limit = await podMemoryLimit(context.record);
  const memoryMib = fitVmMemory(wanted.memoryMib, limit, memoryBudget(env));
  if (memoryMib < wanted.memoryMib) {
    context.log.info({ wantedMib: wanted.memoryMib, memoryMib, podLimit: String(limit) }, "VM sized to fit under the pod's memory limit");
  }
  return { ...wanted, memoryMib };
}

/** Where a warm VM runs until a pod claims it: a cgroup of its own below the configured parent. */
export const warmVmCgroupsPath = (config: Pick<VmmConfig, 'warm_pool_cgroup_parent'>, vmId: string): string =>
  `${config.warm_pool_cgroup_parent}/${vmId}`;

/**
 * The least CPU weight a cgroup can have (v1 cpu.shares, v2 cpu.weight): a warm VM boots on the
 * CPU time nobody else wants, so that the pool's refills never slow down the pods being started.
 */
const LEAST_CPU_WEIGHT = { 1: { file: 'cpu.shares', value: '2' }, 2: { file: 'cpu.weight', value: '1' } } as const;

/** Makes a warm VM's cgroup, at the least CPU weight, before QEMU is started in it. */
export async function makeWarmVmCgroup(cgroupsPath: string): Promise<void> {
  for (const place of await cgroupPlaces(cgroupsPath, await hostCgroupLayout())) {
    const { hierarchy, dir } = place;
    await makeCgroupDir(place);
    if (hierarchy.version === 1 && !hierarchy.controllers.includes('cpu')) continue;
    const weight = LEAST_CPU_WEIGHT[hierarchy.version];
    // A v2 tree without the cpu controller enabled (this host's empty unified one) has no such
    // file, and cgroupfs refuses to make one (EACCES).
    await writeFile(join(dir, weight.file), weight.value).catch((err: unknown) => {
      if (!hasErrnoCode(err, 'ENOENT', 'EACCES')) throw err;
    });
  }
}

/**
 * Moves a claimed warm VM's QEMU into the pod's VM cgroup (vmCgroupsPath), as a cold VM starts
 * there. Under cgroup v1 its pages so far are moved with it (move_charge_at_immigrate: the pod is
 * charged for the whole VM, and its limit was checked to hold it); under v2 they stay charged
 * where they were allocated (so too under v1 on kernels that dropped charge moving), only what the
 * VM allocates from now on is the pod's. Hierarchies
 * where the pod's cgroup parent does not exist get QEMU at their top, as no cold VM stays anywhere
 * in them either: the warm cgroup is left empty, to be removed.
 */
export async function moveWarmVmToPod(pid: number, warmCgroupsPath: string, record: Readonly<SandboxRecord>): Promise<void> {
  const layout = await hostCgroupLayout();
  const podPath = vmCgroupsPath(record);
  const podPlaces = await cgroupPlaces(podPath, layout);
  const joinedDirs = new Set(
    await joinCgroup(podPath, pid, layout, async ({ hierarchy, dir }) => {
      if (hierarchy.version !== 1 || !hierarchy.controllers.includes('memory')) return;
      // 1: anonymous pages, 2: file pages (the guest's RAM is QEMU's anonymous memory). Recent
      // kernels have dropped charge moving and refuse it (EINVAL): there, as under v2, the pages
      // stay charged where they were allocated.
      await writeFile(join(dir, 'memory.move_charge_at_immigrate'), '3').catch((err: unknown) => {
        if (!hasErrnoCode(err, 'EINVAL')) throw err;
      });
    }),
  );
  const joined = new Set(podPlaces.filter((place) => joinedDirs.has(place.dir)).map((place) => place.hierarchy.mountPoint));
  for (const { hierarchy, dir } of await cgroupPlaces(warmCgroupsPath, layout)) {
    if (joined.has(hierarchy.mountPoint)) continue;
    const procs = await readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
    if (procs.split('\n').includes(String(pid))) await writeFile(join(hierarchy.mountPoint, 'cgroup.procs'), String(pid));
  }
}

/** Removes the warm VMs' parent cgroup once no warm VM is left below it (another kuasard's may be: then it stays). */
export async function removeWarmCgroupParent(config: Pick<VmmConfig, 'warm_pool_cgroup_parent'>): Promise<void> {
  for (const dir of await existingCgroupDirs(config.warm_pool_cgroup_parent, await hostCgroupLayout())) {
    await rmdir(dir).catch((err: unknown) => {
      if (!hasErrnoCode(err, 'EBUSY', 'ENOTEMPTY', 'ENOENT')) throw err;
    });
  }
}
