// What the cgroups of a pod on this host tell: the pod's figures from its own cgroup (CRI's
// cgroup_parent, where kubelet puts a pod's limits), as containerd reads them for pod stats, and
// whether the kernel's OOM killer struck in a cgroup (a container's, or a sandbox's).
import type { Logger } from 'pino';
import { failedPrecondition } from '../base/errors.js';
import type { CgroupMetrics } from '../base/metrics.js';
import type { SandboxRecord } from '../base/model.js';
import { readCgroupMetrics, readOomKills } from '../linux/cgroup-stats.js';
import { hostCgroupLayout } from '../linux/cgroups.js';

export async function podCgroupMetrics(record: Readonly<SandboxRecord>): Promise<CgroupMetrics> {
  const parent = record.pod.cgroupParent;
  if (!parent) throw failedPrecondition(`metrics of sandbox ${record.id}: the pod has no cgroup of its own (no cgroup_parent)`);
  return readCgroupMetrics(parent, await hostCgroupLayout());
}

/**
 * Whether the cgroup counts an OOM kill. It outlives the processes until it is removed, so a
 * process that met its limit is reported, before its exit, as containerd's shims do; a cgroup
 * that cannot be read says no (logged).
 */
export async function oomKilledIn(cgroupsPath: string, log: Logger): Promise<boolean> {
  try {
    const kills = await readOomKills(cgroupsPath, await hostCgroupLayout());
    return kills !== undefined && kills > 0n;
  } catch (err) {
    log.warn({ err, cgroup: cgroupsPath }, 'could not read the OOM count');
    return false;
  }
}
