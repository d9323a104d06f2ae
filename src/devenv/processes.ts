// A read of the host's process table from /proc, for the leak checks and for tearing an
// environment down. Reads are synchronous on purpose: a snapshot of ~100 processes takes a few
// milliseconds, and not yielding keeps it as close to one instant as /proc allows.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { readProcStat } from '../linux/proc.js';

export const NAMESPACE_KINDS = ['net', 'ipc', 'uts', 'pid', 'mnt'] as const;
export type NamespaceKind = (typeof NAMESPACE_KINDS)[number];

export interface HostProcess {
  pid: number;
  ppid: number;
  /** The state letter of /proc/<pid>/stat: R, S, D, Z (zombie: exited, not yet reaped)... */
  state: string;
  /** Clock ticks since boot when it started: with the pid, names a process across pid reuse. */
  startTime: string;
  /** The command line, arguments joined by spaces (or `[comm]` when it has none). */
  cmdline: string;
  /** One path per cgroup hierarchy line of /proc/<pid>/cgroup, e.g. `memory:/kuasar-x/abc`. */
  cgroups: string[];
  /** Namespace inodes; a kind is missing when the process vanished while being read. */
  namespaces: Partial<Record<NamespaceKind, number>>;
}

/** Every user-space process (kernel threads are left out: they come and go on their own). */
export function listProcesses(): HostProcess[] {
  const processes: HostProcess[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const process = readProcess(Number(entry));
    if (process && process.pid !== KTHREADD && process.ppid !== KTHREADD) processes.push(process);
  }
  return processes;
}

/** One process, or undefined when it does not exist (any more). */
export function readProcess(pid: number): HostProcess | undefined {
  const stat = readProcStat(pid);
  if (!stat) return undefined;
  try {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    return {
      pid,
      ppid: stat.ppid,
      state: stat.state,
      startTime: stat.startTime,
      cmdline: args.length > 0 ? args.join(' ') : `[${stat.comm}]`,
      cgroups: readCgroupLines(pid),
      namespaces: readNamespaces(pid),
    };
  } catch {
    return undefined;
  }
}

/** The inode of the namespace a /proc/<pid>/ns/<kind> link or a bind-mounted nsfs file names. */
export function namespaceInodeOf(pid: number, kind: NamespaceKind): number | undefined {
  try {
    const match = /\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/ns/${kind}`));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** True while the process that had this pid and start time exists, as a zombie too. */
export function isSameProcessPresent(pid: number, startTime: string): boolean {
  return readProcess(pid)?.startTime === startTime;
}

const KTHREADD = 2;

function readCgroupLines(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      // "4:memory:/a/b" -> "memory:/a/b"; the unified hierarchy has an empty controller list.
      const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
      return `${controllers ?? ''}:${path ?? ''}`;
    });
}

function readNamespaces(pid: number): Partial<Record<NamespaceKind, number>> {
  const namespaces: Partial<Record<NamespaceKind, number>> = {};
  for (const kind of NAMESPACE_KINDS) {
    const inode = namespaceInodeOf(pid, kind);
    if (inode !== undefined) namespaces[kind] = inode;
  }
  return namespaces;
}

/** Live fd keepers whose command line names `path` (their control socket, or the state directory it is in). */
export function fdKeeperPids(path: string): number[] {
  return listProcesses()
    .filter((p) => p.state !== 'Z' && p.cmdline.includes('fd-keeper') && p.cmdline.includes(path))
    .map((p) => p.pid);
}
