// What a task's Stats (and a sandbox's Metrics) report: the counters of a cgroup, shaped field
// for field like containerd's io.containerd.cgroups.v1.Metrics and v2.Metrics messages (with the
// names protobuf-es gives them), so that the service layer packs them without a translation
// table and the compiler checks the two agree. Plain data, no protocol types. Counters are
// bigint: the kernel's are 64-bit. A group a host lacks (no swap accounting, say) is left out.

export interface CgroupV1MemoryEntry {
  limit: bigint;
  usage: bigint;
  max: bigint;
  failcnt: bigint;
}

/** The memory.stat counters, by their field names (pgpgin is pgPgIn, total_* include descendants). */
export type CgroupV1MemoryStatField =
  | 'cache'
  | 'rss'
  | 'rssHuge'
  | 'mappedFile'
  | 'dirty'
  | 'writeback'
  | 'pgPgIn'
  | 'pgPgOut'
  | 'pgFault'
  | 'pgMajFault'
  | 'inactiveAnon'
  | 'activeAnon'
  | 'inactiveFile'
  | 'activeFile'
  | 'unevictable'
  | 'hierarchicalMemoryLimit'
  | 'hierarchicalSwapLimit'
  | 'totalCache'
  | 'totalRss'
  | 'totalRssHuge'
  | 'totalMappedFile'
  | 'totalDirty'
  | 'totalWriteback'
  | 'totalPgPgIn'
  | 'totalPgPgOut'
  | 'totalPgFault'
  | 'totalPgMajFault'
  | 'totalInactiveAnon'
  | 'totalActiveAnon'
  | 'totalInactiveFile'
  | 'totalActiveFile'
  | 'totalUnevictable';

export type CgroupV1MemoryStat = Partial<Record<CgroupV1MemoryStatField, bigint>> & {
  usage?: CgroupV1MemoryEntry;
  swap?: CgroupV1MemoryEntry;
  kernel?: CgroupV1MemoryEntry;
  kernelTcp?: CgroupV1MemoryEntry;
};

export interface CgroupBlkioEntry {
  op: string;
  device: string;
  major: bigint;
  minor: bigint;
  value: bigint;
}

export interface CgroupV1Metrics {
  pids?: { current: bigint; limit: bigint };
  cpu?: {
    /** Nanoseconds. */
    usage: { total: bigint; kernel: bigint; user: bigint; perCpu: bigint[] };
    throttling: { periods: bigint; throttledPeriods: bigint; throttledTime: bigint };
  };
  memory?: CgroupV1MemoryStat;
  blkio?: { ioServiceBytesRecursive: CgroupBlkioEntry[]; ioServicedRecursive: CgroupBlkioEntry[] };
  memoryOomControl?: { oomKillDisable: bigint; underOom: bigint; oomKill: bigint };
}

export interface CgroupPressureData {
  avg10: number;
  avg60: number;
  avg300: number;
  /** Microseconds. */
  total: bigint;
}

export interface CgroupPressure {
  some?: CgroupPressureData;
  full?: CgroupPressureData;
}

/** The memory.stat counters of cgroup v2, by their field names (kernel_stack is kernelStack). */
export type CgroupV2MemoryStatField =
  | 'anon'
  | 'file'
  | 'kernelStack'
  | 'slab'
  | 'sock'
  | 'shmem'
  | 'fileMapped'
  | 'fileDirty'
  | 'fileWriteback'
  | 'anonThp'
  | 'inactiveAnon'
  | 'activeAnon'
  | 'inactiveFile'
  | 'activeFile'
  | 'unevictable'
  | 'slabReclaimable'
  | 'slabUnreclaimable'
  | 'pgfault'
  | 'pgmajfault'
  | 'workingsetRefault'
  | 'workingsetActivate'
  | 'workingsetNodereclaim'
  | 'pgrefill'
  | 'pgscan'
  | 'pgsteal'
  | 'pgactivate'
  | 'pgdeactivate'
  | 'pglazyfree'
  | 'pglazyfreed'
  | 'thpFaultAlloc'
  | 'thpCollapseAlloc';

export type CgroupV2MemoryStat = Partial<Record<CgroupV2MemoryStatField, bigint>> & {
  /** memory.current, memory.max ("max" is 2^64-1), memory.swap.*, memory.peak. */
  usage?: bigint;
  usageLimit?: bigint;
  swapUsage?: bigint;
  swapLimit?: bigint;
  maxUsage?: bigint;
  swapMaxUsage?: bigint;
  psi?: CgroupPressure;
};

export interface CgroupV2Metrics {
  pids?: { current: bigint; limit: bigint };
  cpu?: {
    usageUsec: bigint;
    userUsec: bigint;
    systemUsec: bigint;
    nrPeriods: bigint;
    nrThrottled: bigint;
    throttledUsec: bigint;
    psi?: CgroupPressure;
  };
  memory?: CgroupV2MemoryStat;
  io?: {
    usage: { major: bigint; minor: bigint; rbytes: bigint; wbytes: bigint; rios: bigint; wios: bigint }[];
    psi?: CgroupPressure;
  };
  memoryEvents?: { low: bigint; high: bigint; max: bigint; oom: bigint; oomKill: bigint };
}

/** The counters of one cgroup, in the version of the hierarchy that holds it. */
export type CgroupMetrics = { version: 1; v1: CgroupV1Metrics } | { version: 2; v2: CgroupV2Metrics };
