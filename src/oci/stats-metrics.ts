// A runtime's `events --stats` figures (stats.ts) as the cgroup metrics a task's Stats reports
// (base/metrics.ts), for a kind whose containers have no cgroup of their own to read: runsc puts
// every container of a pod in its one sandbox process, so only the runtime can tell them apart.
//
// What runsc 0.0~20240729 reports there (seen with `runsc events --stats` on this project's host):
// - cpu.usage.total: the container's share of the sandbox cgroup's CPU time, split by the
//   sentry's own accounting per container. It can fall between two samples: an idle container's
//   share shrinks while a busy one's grows. kernel, user and percpu are left out.
// - memory.usage.usage: the whole sandbox's usage split evenly among its containers, the first
//   (pause) container getting 0 once there are others; limit 0 (none reported); no memory.stat.
// - pids.current: the container's own tasks.
//
// What containerd's CRI reads for ContainerStats (internal/cri/server/container_stats_list.go):
// v1: cpu.usage.total; working set = memory.usage.usage - totalInactiveFile; available =
// usage.limit - working set, unless the limit is over 2^62 (no limit); totalRss, totalPgFault,
// totalPgMajFault. v2: cpu.usageUsec * 1000; working set = memory.usage - inactiveFile;
// usageLimit the same way; anon, pgfault, pgmajfault. Both shapes are accepted whatever the host.

import type { CgroupMetrics, CgroupV1MemoryEntry, CgroupV1MemoryStat, CgroupV1Metrics, CgroupV2Metrics } from '../base/metrics.js';
import { mapMemoryStat, V1_MEMORY_STAT, V2_MEMORY_STAT, V2_UNLIMITED } from '../linux/cgroup-stats.js';
import type { ContainerStats, MemoryEntryStats } from './stats.js';

/** What cgroup v1 shows for "no limit" (2^63 rounded down to a 4 KiB page). */
const V1_UNLIMITED = 2n ** 63n - 4096n;

/**
 * A limit of 0 is a runtime reporting none (runsc always does): CRI would subtract the working
 * set from it and wrap around, so it is reported as "no limit", which CRI answers with 0.
 */
function limitOr(limit: bigint, unlimited: bigint): bigint {
  return limit === 0n ? unlimited : limit;
}

function v1Entry(entry: MemoryEntryStats): CgroupV1MemoryEntry {
  return { ...entry, limit: limitOr(entry.limit, V1_UNLIMITED) };
}

/** runsc fills swap, kernel and kernelTCP with zeros: those are left out, as a host without them would. */
function reported(entry: MemoryEntryStats): boolean {
  return entry.usage !== 0n || entry.limit !== 0n || entry.max !== 0n;
}

function v1Metrics({ cpu, memory, pids }: ContainerStats): CgroupV1Metrics {
  // runc copies memory.stat into raw (and its cache from there); its total_inactive_file is what
  // the working set leaves out. runsc has none: its working set is its usage.
  const v1Memory: CgroupV1MemoryStat = {
    cache: memory.cache,
    ...mapMemoryStat(Object.entries(memory.raw), V1_MEMORY_STAT),
    usage: v1Entry(memory.usage),
  };
  for (const field of ['swap', 'kernel', 'kernelTcp'] as const) {
    if (reported(memory[field])) v1Memory[field] = v1Entry(memory[field]);
  }
  return { cpu: { usage: { ...cpu.usage }, throttling: { ...cpu.throttling } }, memory: v1Memory, pids: { ...pids } };
}

/** cgroup v2 counts CPU time in microseconds. Swap is left out: runc's v2 swap entry is memory plus swap. */
function v2Metrics({ cpu, memory, pids }: ContainerStats): CgroupV2Metrics {
  return {
    cpu: {
      usageUsec: cpu.usage.total / 1000n,
      userUsec: cpu.usage.user / 1000n,
      systemUsec: cpu.usage.kernel / 1000n,
      nrPeriods: cpu.throttling.periods,
      nrThrottled: cpu.throttling.throttledPeriods,
      throttledUsec: cpu.throttling.throttledTime / 1000n,
    },
    memory: {
      file: memory.cache,
      ...mapMemoryStat(Object.entries(memory.raw), V2_MEMORY_STAT),
      usage: memory.usage.usage,
      usageLimit: limitOr(memory.usage.limit, V2_UNLIMITED),
      maxUsage: memory.usage.max,
    },
    pids: { ...pids },
  };
}

/**
 * One sample in the shape of cgroup `version`. The caller passes its host's, the version
 * readCgroupMetrics reads a cgroup in; gVisor's own shim reports v1 unless runsc runs with
 * systemd-cgroup, so on a host with v1 hierarchies and cgroupfs paths the two agree.
 */
export function statsToCgroupMetrics(stats: ContainerStats, version: 1 | 2): CgroupMetrics {
  return version === 1 ? { version, v1: v1Metrics(stats) } : { version, v2: v2Metrics(stats) };
}

/**
 * One container's samples, one after another. CRI derives the CPU rate from two samples by an
 * unsigned subtraction, so a total that fell (runsc's can) would read as an enormous rate: the
 * total reported never goes below the highest one reported before.
 */
export class ContainerStatsMetrics {
  #cpuTotal = 0n;

  constructor(private readonly version: 1 | 2) {}

  next(stats: ContainerStats): CgroupMetrics {
    if (stats.cpu.usage.total > this.#cpuTotal) this.#cpuTotal = stats.cpu.usage.total;
    const usage = { ...stats.cpu.usage, total: this.#cpuTotal };
    return statsToCgroupMetrics({ ...stats, cpu: { ...stats.cpu, usage } }, this.version);
  }
}
