// What the cgroups of a pod on this host tell: the pod's figures from its own cgroup (CRI's
// cgroup_parent, where kubelet puts a pod's limits), as containerd reads them for pod stats.
// (Whether the OOM killer struck in a cgroup is linux/cgroup-stats.ts's oomKilledIn, which a
// guest agent uses too.)
import { failedPrecondition } from '../base/errors.js';
import type { CgroupMetrics } from '../base/metrics.js';
import type { SandboxRecord } from '../base/model.js';
import { readCgroupMetrics } from '../linux/cgroup-stats.js';
import { hostCgroupLayout } from '../linux/cgroups.js';

export async function podCgroupMetrics(record: Readonly<SandboxRecord>): Promise<CgroupMetrics> {
  const parent = record.pod.cgroupParent;
  if (!parent) throw failedPrecondition(`metrics of sandbox ${record.id}: the pod has no cgroup of its own (no cgroup_parent)`);
  return readCgroupMetrics(parent, await hostCgroupLayout());
}
