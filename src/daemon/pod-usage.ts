// The two figures of a pod that its metrics show (what kata-monitor shows of a pod): CPU time used
// and memory in use, from the pod cgroup's counters as the kind's sandbox reads them.
import type { CgroupMetrics } from '../base/metrics.js';

export interface PodUsage {
  /** CPU time used by the pod's cgroup since it was made, in seconds; undefined when unknown. */
  cpuSeconds: number | undefined;
  /** The cgroup's memory use (v1 memory.usage_in_bytes, v2 memory.current), in bytes. */
  memoryBytes: number | undefined;
}

export function podUsage(metrics: CgroupMetrics): PodUsage {
  if (metrics.version === 1) {
    const { cpu, memory } = metrics.v1;
    return {
      cpuSeconds: cpu ? Number(cpu.usage.total) / 1e9 : undefined,
      memoryBytes: memory?.usage ? Number(memory.usage.usage) : undefined,
    };
  }
  const { cpu, memory } = metrics.v2;
  return {
    cpuSeconds: cpu ? Number(cpu.usageUsec) / 1e6 : undefined,
    memoryBytes: memory?.usage !== undefined ? Number(memory.usage) : undefined,
  };
}

/**
 * Each pod's usage read at once, within `timeoutMs` overall: a pod whose figures fail or come late
 * is left out (the scrape goes on without it), never waited for.
 */
export async function readPodUsages<P>(
  pods: readonly P[],
  read: (pod: P) => Promise<CgroupMetrics>,
  timeoutMs: number,
): Promise<Map<P, PodUsage>> {
  const usages = new Map<P, PodUsage>();
  const reads = pods.map(async (pod) => {
    const usage = podUsage(await read(pod));
    usages.set(pod, usage);
  });
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, timeoutMs);
  });
  await Promise.race([Promise.allSettled(reads), late]);
  clearTimeout(timer);
  // What comes in after the time-out is not shown: this scrape's answer is taken as it is now.
  return new Map(usages);
}
