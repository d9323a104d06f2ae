// Reads the counters of one cgroup (a container's, or a pod's) from the cgroup file system, in
// the shape containerd's cgroup metrics have (core/metrics.ts). Where the cgroup lives comes from
// cgroups.ts: on a legacy or hybrid host each controller has a v1 hierarchy of its own (runc puts
// containers there, and the cgroup2 tree of a hybrid host holds no controllers), so the v1
// metrics are read; on a unified host, the v2 ones.
//
// Files a host may lack (swap accounting, kmem, PSI, peak) are left out rather than failing the
// whole read; a cgroup that does not exist is NotFound.

import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';

import { notFound } from '../base/errors.js';
import type {
  CgroupBlkioEntry,
  CgroupMetrics,
  CgroupPressure,
  CgroupPressureData,
  CgroupV1MemoryEntry,
  CgroupV1MemoryStatField,
  CgroupV1Metrics,
  CgroupV2MemoryStatField,
  CgroupV2Metrics,
} from '../base/metrics.js';
import { cgroupPlaces, type CgroupLayout, type CgroupPlace, detectCgroupLayout, hostCgroupLayout } from './cgroups.js';
import { hasErrnoCode } from './libc/binding.js';

/** What cgroup v2 writes for "no limit" in memory.max; containerd reports it as 2^64-1. */
export const V2_UNLIMITED = 2n ** 64n - 1n;
/**
 * v1 writes "no limit" as the largest page count its counters hold, in bytes (9223372036854771712
 * with 4 KiB pages), v2 as "max": any limit from 2^62 up is taken as none.
 */
const NO_LIMIT_FROM = 2n ** 62n;
/** cpuacct.stat counts in USER_HZ, which Linux fixes at 100 for user space. */
const NANOSECONDS_PER_USER_HZ_TICK = 10_000_000n;

// ---- parsers of the kernel's formats (pure) -------------------------------------------------

/** "key value" lines (memory.stat, cpu.stat, memory.oom_control, memory.events). */
export function parseKeyedCounters(text: string): Map<string, bigint> {
  const counters = new Map<string, bigint>();
  for (const line of text.split('\n')) {
    const [key, value, extra] = line.trim().split(/\s+/);
    if (key && value !== undefined && extra === undefined && /^\d+$/.test(value)) counters.set(key, BigInt(value));
  }
  return counters;
}

/** One counter; "max" (no limit) reads as `unlimited`. */
export function parseCounter(text: string, unlimited = 0n): bigint {
  const value = text.trim();
  if (value === 'max') return unlimited;
  if (!/^-?\d+$/.test(value)) throw new Error(`not a cgroup counter: ${JSON.stringify(value.slice(0, 40))}`);
  const parsed = BigInt(value);
  // v1 writes -1 for "no limit" in a few files (memory.soft_limit_in_bytes, cpu.cfs_quota_us).
  return parsed < 0n ? unlimited : parsed;
}

/** Space-separated counters (cpuacct.usage_percpu). */
export function parseCounterList(text: string): bigint[] {
  return text
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map((v) => BigInt(v));
}

/** blkio.throttle.* files: "8:0 Read 4096" lines and a closing "Total n". */
export function parseBlkio(text: string): CgroupBlkioEntry[] {
  const entries: CgroupBlkioEntry[] = [];
  for (const line of text.split('\n')) {
    const match = /^(\d+):(\d+) (\S+) (\d+)$/.exec(line.trim());
    if (match) entries.push({ op: match[3]!, device: '', major: BigInt(match[1]!), minor: BigInt(match[2]!), value: BigInt(match[4]!) });
  }
  return entries;
}

/** io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" lines. */
export function parseIoStat(text: string): NonNullable<CgroupV2Metrics['io']>['usage'] {
  return text
    .split('\n')
    .map((line) => /^(\d+):(\d+) (.*)$/.exec(line.trim()))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => {
      const fields = new Map(match[3]!.split(' ').map((pair) => pair.split('=') as [string, string]));
      const counter = (name: string) => BigInt(fields.get(name) ?? 0);
      return {
        major: BigInt(match[1]!),
        minor: BigInt(match[2]!),
        rbytes: counter('rbytes'),
        wbytes: counter('wbytes'),
        rios: counter('rios'),
        wios: counter('wios'),
      };
    });
}

/** A pressure file (cpu.pressure...): "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" and "full ...". */
export function parsePressure(text: string): CgroupPressure {
  const pressure: CgroupPressure = {};
  for (const line of text.split('\n')) {
    const [kind, ...pairs] = line.trim().split(' ');
    if (kind !== 'some' && kind !== 'full') continue;
    const fields = new Map(pairs.map((pair) => pair.split('=') as [string, string]));
    const data: CgroupPressureData = {
      avg10: Number(fields.get('avg10') ?? 0),
      avg60: Number(fields.get('avg60') ?? 0),
      avg300: Number(fields.get('avg300') ?? 0),
      total: BigInt(fields.get('total') ?? 0),
    };
    pressure[kind] = data;
  }
  return pressure;
}

// memory.stat keys of cgroup v1 and the fields they fill. The total_ ones repeat the first
// fifteen for the whole subtree.
export const V1_MEMORY_STAT: Record<string, CgroupV1MemoryStatField> = {
  cache: 'cache',
  rss: 'rss',
  rss_huge: 'rssHuge',
  mapped_file: 'mappedFile',
  dirty: 'dirty',
  writeback: 'writeback',
  pgpgin: 'pgPgIn',
  pgpgout: 'pgPgOut',
  pgfault: 'pgFault',
  pgmajfault: 'pgMajFault',
  inactive_anon: 'inactiveAnon',
  active_anon: 'activeAnon',
  inactive_file: 'inactiveFile',
  active_file: 'activeFile',
  unevictable: 'unevictable',
  hierarchical_memory_limit: 'hierarchicalMemoryLimit',
  hierarchical_memsw_limit: 'hierarchicalSwapLimit',
  total_cache: 'totalCache',
  total_rss: 'totalRss',
  total_rss_huge: 'totalRssHuge',
  total_mapped_file: 'totalMappedFile',
  total_dirty: 'totalDirty',
  total_writeback: 'totalWriteback',
  total_pgpgin: 'totalPgPgIn',
  total_pgpgout: 'totalPgPgOut',
  total_pgfault: 'totalPgFault',
  total_pgmajfault: 'totalPgMajFault',
  total_inactive_anon: 'totalInactiveAnon',
  total_active_anon: 'totalActiveAnon',
  total_inactive_file: 'totalInactiveFile',
  total_active_file: 'totalActiveFile',
  total_unevictable: 'totalUnevictable',
};

// memory.stat keys of cgroup v2. Kernels since 5.9 split workingset_* into _anon and _file;
// those are summed into the one field containerd has.
export const V2_MEMORY_STAT: Record<string, CgroupV2MemoryStatField> = {
  anon: 'anon',
  file: 'file',
  kernel_stack: 'kernelStack',
  slab: 'slab',
  sock: 'sock',
  shmem: 'shmem',
  file_mapped: 'fileMapped',
  file_dirty: 'fileDirty',
  file_writeback: 'fileWriteback',
  anon_thp: 'anonThp',
  inactive_anon: 'inactiveAnon',
  active_anon: 'activeAnon',
  inactive_file: 'inactiveFile',
  active_file: 'activeFile',
  unevictable: 'unevictable',
  slab_reclaimable: 'slabReclaimable',
  slab_unreclaimable: 'slabUnreclaimable',
  pgfault: 'pgfault',
  pgmajfault: 'pgmajfault',
  workingset_refault: 'workingsetRefault',
  workingset_refault_anon: 'workingsetRefault',
  workingset_refault_file: 'workingsetRefault',
  workingset_activate: 'workingsetActivate',
  workingset_activate_anon: 'workingsetActivate',
  workingset_activate_file: 'workingsetActivate',
  workingset_nodereclaim: 'workingsetNodereclaim',
  pgrefill: 'pgrefill',
  pgscan: 'pgscan',
  pgsteal: 'pgsteal',
  pgactivate: 'pgactivate',
  pgdeactivate: 'pgdeactivate',
  pglazyfree: 'pglazyfree',
  pglazyfreed: 'pglazyfreed',
  thp_fault_alloc: 'thpFaultAlloc',
  thp_collapse_alloc: 'thpCollapseAlloc',
};

/**
 * The fields of memory.stat counters (a file's, or the `raw` map runc's `events --stats` copies
 * from one), by the table of its cgroup version; unknown keys are dropped.
 */
export function mapMemoryStat<F extends string>(
  counters: Iterable<[string, bigint]>,
  table: Record<string, F>,
): Partial<Record<F, bigint>> {
  const mapped: Partial<Record<F, bigint>> = {};
  for (const [key, value] of counters) {
    const field = table[key];
    if (field) mapped[field] = (mapped[field] ?? 0n) + value;
  }
  return mapped;
}

// ---- reading a cgroup -----------------------------------------------------------------------

/** A file of the cgroup, or undefined when this host (or this controller) does not have it. */
async function readOptional(dir: string | undefined, file: string): Promise<string | undefined> {
  if (dir === undefined) return undefined;
  try {
    return await readFile(path.join(dir, file), 'utf8');
  } catch (err) {
    // ENOENT: no such file here; EOPNOTSUPP/ENODEV: a file the kernel lists but cannot serve.
    if (hasErrnoCode(err, 'ENOENT', 'EOPNOTSUPP', 'ENODEV')) return undefined;
    throw err;
  }
}

async function optionalCounter(dir: string | undefined, file: string, unlimited = 0n): Promise<bigint | undefined> {
  const text = await readOptional(dir, file);
  return text === undefined ? undefined : parseCounter(text, unlimited);
}

async function assertExists(dir: string | undefined, cgroupsPath: string): Promise<string> {
  const exists =
    dir !== undefined &&
    (await stat(dir).then(
      (s) => s.isDirectory(),
      () => false,
    ));
  if (!exists) throw notFound(`cgroup ${cgroupsPath}${dir ? ` (${dir})` : ''}`);
  return dir;
}

/** The v1 directory of `controller`, or undefined when no hierarchy carries it. */
function v1Dir(places: readonly CgroupPlace[], controller: string): string | undefined {
  return places.find((p) => p.hierarchy.version === 1 && p.hierarchy.controllers.includes(controller))?.dir;
}

function v2Dir(places: readonly CgroupPlace[]): string | undefined {
  return places.find((p) => p.hierarchy.version === 2)?.dir;
}

async function v1MemoryEntry(dir: string, prefix: string): Promise<CgroupV1MemoryEntry | undefined> {
  const usage = await optionalCounter(dir, `${prefix}.usage_in_bytes`);
  if (usage === undefined) return undefined;
  return {
    usage,
    limit: (await optionalCounter(dir, `${prefix}.limit_in_bytes`)) ?? 0n,
    max: (await optionalCounter(dir, `${prefix}.max_usage_in_bytes`)) ?? 0n,
    failcnt: (await optionalCounter(dir, `${prefix}.failcnt`)) ?? 0n,
  };
}

async function readV1(places: readonly CgroupPlace[], cgroupsPath: string): Promise<CgroupV1Metrics> {
  const memoryDir = await assertExists(v1Dir(places, 'memory'), cgroupsPath);
  const cpuacctDir = v1Dir(places, 'cpuacct');
  const cpuDir = v1Dir(places, 'cpu');
  const pidsDir = v1Dir(places, 'pids');
  const blkioDir = v1Dir(places, 'blkio');
  const metrics: CgroupV1Metrics = {};

  const memoryStat = await readOptional(memoryDir, 'memory.stat');
  if (memoryStat !== undefined) {
    metrics.memory = { ...mapMemoryStat(parseKeyedCounters(memoryStat), V1_MEMORY_STAT) };
    const entries = { usage: 'memory', swap: 'memory.memsw', kernel: 'memory.kmem', kernelTcp: 'memory.kmem.tcp' } as const;
    for (const [field, prefix] of Object.entries(entries) as [keyof typeof entries, string][]) {
      const entry = await v1MemoryEntry(memoryDir, prefix);
      if (entry) metrics.memory[field] = entry;
    }
  }
  const oomControl = await readOptional(memoryDir, 'memory.oom_control');
  if (oomControl !== undefined) {
    const c = parseKeyedCounters(oomControl);
    metrics.memoryOomControl = {
      oomKillDisable: c.get('oom_kill_disable') ?? 0n,
      underOom: c.get('under_oom') ?? 0n,
      oomKill: c.get('oom_kill') ?? 0n,
    };
  }

  const total = await optionalCounter(cpuacctDir, 'cpuacct.usage');
  if (total !== undefined) {
    const perCpu = await readOptional(cpuacctDir, 'cpuacct.usage_percpu');
    let user = await optionalCounter(cpuacctDir, 'cpuacct.usage_user');
    let kernel = await optionalCounter(cpuacctDir, 'cpuacct.usage_sys');
    if (user === undefined || kernel === undefined) {
      // Older kernels have only the coarse tick counts.
      const ticks = parseKeyedCounters((await readOptional(cpuacctDir, 'cpuacct.stat')) ?? '');
      user = (ticks.get('user') ?? 0n) * NANOSECONDS_PER_USER_HZ_TICK;
      kernel = (ticks.get('system') ?? 0n) * NANOSECONDS_PER_USER_HZ_TICK;
    }
    const throttle = parseKeyedCounters((await readOptional(cpuDir, 'cpu.stat')) ?? '');
    metrics.cpu = {
      usage: { total, user, kernel, perCpu: perCpu === undefined ? [] : parseCounterList(perCpu) },
      throttling: {
        periods: throttle.get('nr_periods') ?? 0n,
        throttledPeriods: throttle.get('nr_throttled') ?? 0n,
        throttledTime: throttle.get('throttled_time') ?? 0n,
      },
    };
  }

  const pids = await optionalCounter(pidsDir, 'pids.current');
  if (pids !== undefined) metrics.pids = { current: pids, limit: (await optionalCounter(pidsDir, 'pids.max')) ?? 0n };

  const serviceBytes = await readOptional(blkioDir, 'blkio.throttle.io_service_bytes_recursive');
  const serviced = await readOptional(blkioDir, 'blkio.throttle.io_serviced_recursive');
  if (serviceBytes !== undefined || serviced !== undefined) {
    metrics.blkio = { ioServiceBytesRecursive: parseBlkio(serviceBytes ?? ''), ioServicedRecursive: parseBlkio(serviced ?? '') };
  }
  return metrics;
}

async function optionalPressure(dir: string, file: string): Promise<CgroupPressure | undefined> {
  const text = await readOptional(dir, file);
  return text === undefined ? undefined : parsePressure(text);
}

async function readV2(places: readonly CgroupPlace[], cgroupsPath: string): Promise<CgroupV2Metrics> {
  const dir = await assertExists(v2Dir(places), cgroupsPath);
  const metrics: CgroupV2Metrics = {};

  const cpuStat = await readOptional(dir, 'cpu.stat');
  if (cpuStat !== undefined) {
    const c = parseKeyedCounters(cpuStat);
    const psi = await optionalPressure(dir, 'cpu.pressure');
    metrics.cpu = {
      usageUsec: c.get('usage_usec') ?? 0n,
      userUsec: c.get('user_usec') ?? 0n,
      systemUsec: c.get('system_usec') ?? 0n,
      nrPeriods: c.get('nr_periods') ?? 0n,
      nrThrottled: c.get('nr_throttled') ?? 0n,
      throttledUsec: c.get('throttled_usec') ?? 0n,
      ...(psi ? { psi } : {}),
    };
  }

  const memoryStat = await readOptional(dir, 'memory.stat');
  if (memoryStat !== undefined) {
    metrics.memory = { ...mapMemoryStat(parseKeyedCounters(memoryStat), V2_MEMORY_STAT) };
    const singles = {
      usage: ['memory.current', 0n],
      usageLimit: ['memory.max', V2_UNLIMITED],
      swapUsage: ['memory.swap.current', 0n],
      swapLimit: ['memory.swap.max', V2_UNLIMITED],
      maxUsage: ['memory.peak', 0n],
      swapMaxUsage: ['memory.swap.peak', 0n],
    } as const;
    for (const [field, [file, unlimited]] of Object.entries(singles) as [keyof typeof singles, [string, bigint]][]) {
      const value = await optionalCounter(dir, file, unlimited);
      if (value !== undefined) metrics.memory[field] = value;
    }
    const psi = await optionalPressure(dir, 'memory.pressure');
    if (psi) metrics.memory.psi = psi;
  }

  const events = await readOptional(dir, 'memory.events');
  if (events !== undefined) {
    const e = parseKeyedCounters(events);
    metrics.memoryEvents = {
      low: e.get('low') ?? 0n,
      high: e.get('high') ?? 0n,
      max: e.get('max') ?? 0n,
      oom: e.get('oom') ?? 0n,
      oomKill: e.get('oom_kill') ?? 0n,
    };
  }

  const pids = await optionalCounter(dir, 'pids.current');
  if (pids !== undefined) metrics.pids = { current: pids, limit: (await optionalCounter(dir, 'pids.max')) ?? 0n };

  const ioStat = await readOptional(dir, 'io.stat');
  if (ioStat !== undefined) {
    const psi = await optionalPressure(dir, 'io.pressure');
    metrics.io = { usage: parseIoStat(ioStat), ...(psi ? { psi } : {}) };
  }
  return metrics;
}

/**
 * The counters of the cgroup `cgroupsPath` (OCI linux.cgroupsPath, cgroupfs form): v1 metrics on
 * a legacy or hybrid host, v2 on a unified one. NotFound when the cgroup does not exist.
 */
export async function readCgroupMetrics(cgroupsPath: string, layout?: CgroupLayout): Promise<CgroupMetrics> {
  const hostLayout = layout ?? (await detectCgroupLayout());
  const places = await cgroupPlaces(cgroupsPath, hostLayout);
  if (hostLayout.mode === 'unified') return { version: 2, v2: await readV2(places, cgroupsPath) };
  return { version: 1, v1: await readV1(places, cgroupsPath) };
}

/**
 * The v2 counters of `cgroupsPath`, whatever the host's layout: a VM's guest has cgroup v2 only,
 * and its agent answers in v2's shape. On a hybrid host the cgroup2 tree holds no controllers,
 * so only its core files (cpu.stat) are there. NotFound when the cgroup has no v2 directory.
 */
export async function readCgroupV2Metrics(cgroupsPath: string, layout?: CgroupLayout): Promise<CgroupV2Metrics> {
  const places = await cgroupPlaces(cgroupsPath, layout ?? (await detectCgroupLayout()));
  return readV2(places, cgroupsPath);
}

/**
 * The memory limit that holds for the cgroup `cgroupsPath` in bytes (its own or an ancestor's,
 * whichever is lowest), or undefined when none does or the cgroup cannot be read. v1 keeps the
 * lowest in memory.stat's hierarchical_memory_limit; on v2 each memory.max up to the root is read.
 */
export async function readEffectiveMemoryLimit(cgroupsPath: string, layout?: CgroupLayout): Promise<bigint | undefined> {
  const hostLayout = layout ?? (await detectCgroupLayout());
  const places = await cgroupPlaces(cgroupsPath, hostLayout);
  let limit: bigint | undefined;
  if (hostLayout.mode === 'unified') {
    const place = places.find((p) => p.hierarchy.version === 2);
    if (!place) return undefined;
    for (let dir = place.dir; dir.startsWith(place.hierarchy.mountPoint) && dir !== place.hierarchy.mountPoint; dir = path.dirname(dir)) {
      const max = await optionalCounter(dir, 'memory.max', V2_UNLIMITED);
      if (max !== undefined && (limit === undefined || max < limit)) limit = max;
    }
  } else {
    const stat = await readOptional(v1Dir(places, 'memory'), 'memory.stat');
    limit = stat === undefined ? undefined : parseKeyedCounters(stat).get('hierarchical_memory_limit');
  }
  return limit !== undefined && limit < NO_LIMIT_FROM ? limit : undefined;
}

/**
 * How many processes of the cgroup the kernel's OOM killer has killed (v1 memory.oom_control,
 * v2 memory.events), or undefined when the cgroup cannot be read (it is gone).
 */
export async function readOomKills(cgroupsPath: string, layout?: CgroupLayout): Promise<bigint | undefined> {
  const hostLayout = layout ?? (await detectCgroupLayout());
  const places = await cgroupPlaces(cgroupsPath, hostLayout);
  const [dir, file] = hostLayout.mode === 'unified' ? [v2Dir(places), 'memory.events'] : [v1Dir(places, 'memory'), 'memory.oom_control'];
  const text = await readOptional(dir, file);
  return text === undefined ? undefined : (parseKeyedCounters(text).get('oom_kill') ?? 0n);
}

/**
 * Whether the cgroup counts an OOM kill. It outlives the processes until it is removed, so a
 * process that met its limit is reported, before its exit, as containerd's shims do; a cgroup
 * that cannot be read says no (logged).
 */
export async function oomKilledIn(cgroupsPath: string, log: { warn(fields: object, message: string): void }): Promise<boolean> {
  try {
    const kills = await readOomKills(cgroupsPath, await hostCgroupLayout());
    return kills !== undefined && kills > 0n;
  } catch (err) {
    log.warn({ err, cgroup: cgroupsPath }, 'could not read the OOM count');
    return false;
  }
}
