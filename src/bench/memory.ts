// Management-plane memory: what the runtime keeps resident besides the containers themselves.
// For kuasar that is kuasard plus any helper process it keeps per pod; for containerd's runc
// handler it is one containerd-shim-runc-v2 per pod (the pause process is counted apart: it is
// the pod's sandbox, not the management plane). PSS (proportional set size) is the measure:
// pages shared by N processes count 1/N for each, so 50 shims sharing one binary are not
// counted as 50 copies of it, and the sum over processes is what they really cost together.
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { HostProcess } from '../devenv/processes.js';
import type { PodProcessLocation } from '../kind-api/registration.js';

/** The signal gc-hook.ts answers with a full garbage collection. */
export const GC_SIGNAL = 'SIGUSR2';
const GC_HOOK = fileURLToPath(new URL('./gc-hook.js', import.meta.url));

/** NODE_OPTIONS that load gc-hook.ts into a Node.js process, after those already set. */
export function nodeOptionsWithGcHook(current: string | undefined): string {
  return [current, '--expose-gc', `--import ${GC_HOOK}`].filter(Boolean).join(' ');
}

/**
 * True when the process was started with gc-hook.ts. Only such a process may be sent GC_SIGNAL:
 * SIGUSR2 ends any other Node.js process.
 */
export function hasGcHook(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/environ`, 'utf8')
      .split('\0')
      .some((v) => v.startsWith('NODE_OPTIONS=') && v.includes(GC_HOOK));
  } catch {
    return false;
  }
}

export interface ProcessMemory {
  /** Proportional set size, KiB. */
  pssKb: number;
  /** Resident set size, KiB (shared pages counted in full). */
  rssKb: number;
  /**
   * Pages no other process maps, KiB (the unique set size). Unlike PSS it does not move when
   * other processes mapping the same files come and go: kuasard shares the node binary's ~45 MiB
   * of text with every Node.js process on the machine, and its PSS holds 1/N of it.
   */
  privateKb: number;
}

/** The Pss, Rss and Private_* lines of a /proc/<pid>/smaps_rollup. */
export function parseSmapsRollup(text: string): ProcessMemory {
  const field = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(text);
    if (!match) throw new Error(`smaps_rollup has no ${name} line`);
    return Number(match[1]);
  };
  return { pssKb: field('Pss'), rssKb: field('Rss'), privateKb: field('Private_Clean') + field('Private_Dirty') };
}

/** The memory of one process, or undefined when it is gone. */
export function readProcessMemory(pid: number): ProcessMemory | undefined {
  try {
    return parseSmapsRollup(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * A process's PSS by kind of mapping, KiB: what a pod's own processes hold is told apart by it
 * (a VM's QEMU: the guest's RAM and QEMU's heap are anonymous, TCG's translated code anonymous and
 * executable, QEMU, its libraries and the kernel image it loaded file pages shared between VMs).
 */
export interface PssByMapping {
  /** Anonymous mappings that are not executable (heaps, a VM's RAM). */
  anonymousKb: number;
  /** Anonymous executable mappings: code generated at run time (a JIT, TCG's translations). */
  executableAnonymousKb: number;
  /** Mappings of files (programs, libraries, images), whose pages every process mapping them shares. */
  fileKb: number;
}

/** Sums the Pss lines of a /proc/<pid>/smaps by the kind of the mapping each follows. */
export function parseSmapsByMapping(text: string): PssByMapping {
  const sums: PssByMapping = { anonymousKb: 0, executableAnonymousKb: 0, fileKb: 0 };
  let kind: keyof PssByMapping = 'anonymousKb';
  for (const line of text.split('\n')) {
    // "7f23b0000000-7f23effff000 rwxp 00000000 00:00 0   [path]": perms, offset, device, inode.
    const header = /^[0-9a-f]+-[0-9a-f]+ (\S{4}) \S+ \S+ (\d+)/.exec(line);
    if (header) {
      const file = header[2] !== '0';
      kind = file ? 'fileKb' : header[1]?.includes('x') ? 'executableAnonymousKb' : 'anonymousKb';
      continue;
    }
    const pss = /^Pss:\s+(\d+) kB$/.exec(line);
    if (pss) sums[kind] += Number(pss[1]);
  }
  return sums;
}

/** The PSS split of processes, summed; processes that vanished meanwhile count nothing. */
export function sumPssByMapping(pids: readonly number[]): PssByMapping {
  const sum: PssByMapping = { anonymousKb: 0, executableAnonymousKb: 0, fileKb: 0 };
  for (const pid of pids) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
    } catch {
      continue;
    }
    const split = parseSmapsByMapping(text);
    sum.anonymousKb += split.anonymousKb;
    sum.executableAnonymousKb += split.executableAnonymousKb;
    sum.fileKb += split.fileKb;
  }
  return sum;
}

/** What one environment's management plane is made of, for each side. */
export interface ManagementPlane {
  kuasard?: HostProcess;
  /** kuasard's children that are neither containers nor the pods' own processes: per-pod helpers (none expected for runc pods). */
  kuasardHelpers: HostProcess[];
  /** containerd's runc shims started by this environment's containerd. */
  shims: HostProcess[];
  /** The baseline's pause processes (one per pod), reported apart from the shims. */
  pauses: HostProcess[];
  /** With PlaneLocator.podProcesses: the pods' own processes, by pod (see podProcessGroups). */
  podProcesses: Map<string, HostProcess[]>;
  /** With PlaneLocator.idlePools: the idle members of warm pools (kuasard's children, neither helpers nor any pod's). */
  idlePool: HostProcess[];
}

export interface PlaneLocator {
  /** kuasard's configuration file: its command line names it, which tells it from other environments' daemons. */
  kuasardConfig: string;
  /** containerd's socket: each shim's command line carries it (`-address <socket>`). */
  containerdSocket: string;
  /** The pods' cgroup directory name: containers (and pause processes) live below it. */
  cgroupName: string;
  /** Where the measured kind's pods keep processes of their own (KindBenchmark.podProcesses), for kinds whose pods do. */
  podProcesses?: PodProcessLocation;
  /**
   * The warm pools of the run (KindBenchmark.warmPool): the name prefix of a member's process and
   * the ids of the idle members. A claimed member keeps its name: it is its pod's.
   */
  idlePools?: readonly { argumentPrefix: string; idleIds: ReadonlySet<string> }[];
}

/** Picks one environment's management-plane processes out of the host's process table. */
export function findManagementPlane(processes: readonly HostProcess[], where: PlaneLocator): ManagementPlane {
  const inPodCgroup = (p: HostProcess) => p.cgroups.some((c) => c.includes(`/${where.cgroupName}/`));
  const kuasard = processes.find((p) => /\bkuasard(\.js)?\b/.test(p.cmdline) && p.cmdline.includes(where.kuasardConfig));
  const shims = processes.filter(
    (p) => /(^|\/)containerd-shim-runc-v2\b/.test(p.cmdline) && p.cmdline.includes(`-address ${where.containerdSocket}`),
  );
  const shimPids = new Set(shims.map((s) => s.pid));
  const idlePool = idlePoolProcesses(processes, where.idlePools ?? [], kuasard?.pid);
  const idle = new Set(idlePool.map((p) => p.pid));
  const podProcesses = where.podProcesses
    ? podProcessGroups(
        processes.filter((p) => !idle.has(p.pid)),
        where.podProcesses,
        { cgroupName: where.cgroupName, kuasardPid: kuasard?.pid },
      )
    : new Map<string, HostProcess[]>();
  const ofPods = new Set([...podProcesses.values()].flat().map((p) => p.pid));
  return {
    ...(kuasard ? { kuasard } : {}),
    kuasardHelpers: kuasard
      ? processes.filter((p) => p.ppid === kuasard.pid && !inPodCgroup(p) && !ofPods.has(p.pid) && !idle.has(p.pid) && p.state !== 'Z')
      : [],
    shims,
    pauses: processes.filter((p) => shimPids.has(p.ppid) && p.cmdline === '/pause'),
    podProcesses,
    idlePool,
  };
}

/** Which environment's pods: its pods' cgroup directory name, and its kuasard. */
export interface PodProcessScope {
  /** The environment's pods' cgroup directory name: per-pod cgroups are right below it. */
  cgroupName: string;
  /** Processes found by their argument must be kuasard's children: other environments run VMs too. */
  kuasardPid: number | undefined;
}

/**
 * The pods' own processes, by pod (the per-pod cgroup's name, or the argument that names the pod),
 * zombies left out. By cgroup: a process counts when any of its hierarchies (cgroup v1) or the
 * unified one (v2) puts it in a cgroup right below the environment's whose name has the prefix.
 * By argument: a child of kuasard with an argument that begins with the prefix (a daemonized VM
 * is kuasard's child: kuasard is a child subreaper).
 */
export function podProcessGroups(
  processes: readonly HostProcess[],
  location: PodProcessLocation,
  scope: PodProcessScope,
): Map<string, HostProcess[]> {
  const groups = new Map<string, HostProcess[]>();
  for (const p of processes) {
    if (p.state === 'Z') continue;
    const pod =
      'cgroupPrefix' in location ? podByCgroup(p, location.cgroupPrefix, scope) : podByArgument(p, location.argumentPrefix, scope);
    if (pod !== undefined) groups.set(pod, [...(groups.get(pod) ?? []), p]);
  }
  return groups;
}

function podByCgroup(p: HostProcess, prefix: string, scope: PodProcessScope): string | undefined {
  const parent = `/${scope.cgroupName}/`;
  // "memory:/<cgroupName>/<prefix><id>" -> "<prefix><id>"
  const names = p.cgroups.flatMap((line) => {
    const at = line.indexOf(parent);
    return at < 0 ? [] : [line.slice(at + parent.length).split('/')[0] as string];
  });
  return names.find((n) => n.startsWith(prefix));
}

function podByArgument(p: HostProcess, prefix: string, scope: PodProcessScope): string | undefined {
  if (scope.kuasardPid === undefined || p.ppid !== scope.kuasardPid) return undefined;
  // "-name kuasar-vmm-<id>,debug-threads=on" -> "kuasar-vmm-<id>"
  const argument = p.cmdline.split(' ').find((arg) => arg.startsWith(prefix));
  return argument === undefined ? undefined : prefix + (/^[\w.-]*/.exec(argument.slice(prefix.length))?.[0] ?? '');
}

/** The idle members of pools among kuasard's children, by their name (`<prefix><id>`) and their ids. */
export function idlePoolProcesses(
  processes: readonly HostProcess[],
  pools: readonly { argumentPrefix: string; idleIds: ReadonlySet<string> }[],
  kuasardPid: number | undefined,
): HostProcess[] {
  if (kuasardPid === undefined) return [];
  return processes.filter((p) => {
    if (p.ppid !== kuasardPid || p.state === 'Z') return false;
    return pools.some(({ argumentPrefix, idleIds }) => {
      const argument = p.cmdline.split(' ').find((arg) => arg.startsWith(argumentPrefix));
      const id = argument === undefined ? undefined : /^[\w.-]*/.exec(argument.slice(argumentPrefix.length))?.[0];
      return id !== undefined && idleIds.has(id);
    });
  });
}

/**
 * The time a process's threads have spent on a CPU, ns (the first field of each thread's
 * /proc/<pid>/task/<tid>/schedstat); 0 when it is gone. Threads that ended meanwhile no longer count.
 */
export function cpuTimeNs(pid: number): number {
  let threads: string[];
  try {
    threads = readdirSync(`/proc/${pid}/task`);
  } catch {
    return 0;
  }
  let sum = 0;
  for (const tid of threads) {
    try {
      sum += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // The thread ended.
    }
  }
  return sum;
}

/**
 * True when each of the last `steps` steps of `series` (reads of one figure, KiB) moved by less
 * than `stepKb`: the memory has stopped growing or shrinking.
 */
export function hasSettled(series: readonly number[], stepKb: number, steps: number): boolean {
  if (series.length < steps + 1) return false;
  const tail = series.slice(-(steps + 1));
  return tail.every((kb, i) => i === 0 || Math.abs(kb - (tail[i - 1] as number)) < stepKb);
}

/** The sums over processes; processes that vanished meanwhile count nothing. */
export function sumMemory(pids: readonly number[]): ProcessMemory & { processes: number } {
  const sum = { pssKb: 0, rssKb: 0, privateKb: 0, processes: 0 };
  for (const pid of pids) {
    const memory = readProcessMemory(pid);
    if (!memory) continue;
    sum.pssKb += memory.pssKb;
    sum.rssKb += memory.rssKb;
    sum.privateKb += memory.privateKb;
    sum.processes += 1;
  }
  return sum;
}

/**
 * Starts the environment with gc-hook.ts preloaded into the Node.js processes it starts (kuasard):
 * the daemons inherit this process's environment when they start, and only then.
 */
export async function startWithGcHook<T>(start: () => Promise<T>): Promise<T> {
  const saved = process.env['NODE_OPTIONS'];
  process.env['NODE_OPTIONS'] = nodeOptionsWithGcHook(saved);
  try {
    return await start();
  } finally {
    if (saved === undefined) delete process.env['NODE_OPTIONS'];
    else process.env['NODE_OPTIONS'] = saved;
  }
}

/** The live JavaScript heap that gc-hook.ts reported after the last collection it ran, from the daemon's log. */
export function lastGcHeapUsed(logText: string): number | undefined {
  const line = logText
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('{"msg":"gc"'));
  return line ? (JSON.parse(line) as { heapUsed: number }).heapUsed : undefined;
}
