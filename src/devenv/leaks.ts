// Leak checks: what a pod left on the host after it was removed. A test takes a snapshot before
// the pod, another after, and asserts that the difference is empty:
//
//   const before = snapshotHost({ dirs: [env.paths.kuasarState] });
//   ... run and remove a pod ...
//   assert.deepEqual(diffHost(before, snapshotHost({ dirs: [...] }), { scope: env.scope }), NO_LEAKS);
//
// Without a scope every new thing on the host counts, which is exact when nothing else runs (CI
// runs the e2e tests one file at a time). With a scope, only what is tied to that environment
// counts (see ownership.ts), so tests of other suites or other people running on the same host
// at the same time do not make the check fail.
import { lstatSync, readdirSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { readProcStat } from '../linux/proc.js';
import { cgroupHierarchies, readMounts, type MountEntry } from './mounts.js';
import { isScopeCgroupPath, isScopeLink, isScopeMount, NETNS_DIRS, processesOfScope, type LeakScope } from './ownership.js';
import { listProcesses, NAMESPACE_KINDS, type HostProcess } from './processes.js';

export type { LeakScope } from './ownership.js';

export interface NetworkLink {
  name: string;
  /** The bridge (or bond) it is enslaved to, if any. */
  master?: string;
}

export interface HostSnapshot {
  mounts: MountEntry[];
  /** Named network namespaces: entries of /run/netns and /var/run/netns (real paths). */
  netns: string[];
  /** Cgroup directories (absolute paths) whose path matches one of the patterns. */
  cgroups: string[];
  processes: HostProcess[];
  links: NetworkLink[];
  /** Every file, socket and directory below the requested directories, as `<type> <path>`. */
  files: string[];
}

export interface SnapshotOptions {
  /** Directories whose whole content is recorded (a kuasard state dir, a socket dir...). */
  dirs?: readonly string[];
  /** Which cgroup directories to record; defaults to those naming k8s.io or kuasar. */
  cgroupPatterns?: readonly RegExp[];
}

export interface DiffOptions {
  /** Processes to leave out of the diff, besides the scope's daemons. */
  ignorePids?: readonly number[];
  scope?: LeakScope;
}

/** Things that appeared between two snapshots, one readable line each. */
export interface HostDiff {
  mounts: string[];
  netns: string[];
  cgroups: string[];
  processes: string[];
  links: string[];
  files: string[];
}

export const NO_LEAKS: Readonly<HostDiff> = Object.freeze({ mounts: [], netns: [], cgroups: [], processes: [], links: [], files: [] });

const DEFAULT_CGROUP_PATTERNS = [/k8s\.io/, /kuasar/];

export function snapshotHost(options: SnapshotOptions = {}): HostSnapshot {
  const mounts = readMounts();
  const patterns = options.cgroupPatterns ?? DEFAULT_CGROUP_PATTERNS;
  return {
    mounts,
    netns: [...new Set(NETNS_DIRS.flatMap((dir) => listDir(dir).map((name) => realpathOrSelf(join(dir, name)))))].sort(),
    cgroups: cgroupHierarchies(mounts).flatMap((root) => walkDirs(root).filter((d) => patterns.some((p) => p.test(d)))),
    processes: listProcesses(),
    links: listLinks(),
    files: (options.dirs ?? []).flatMap((dir) => walkFiles(dir, new Set(mounts.map((m) => m.mountPoint)))),
  };
}

export function diffHost(before: HostSnapshot, after: HostSnapshot, options: DiffOptions = {}): HostDiff {
  const scope = options.scope;
  const mountKey = (m: MountEntry) => `${m.fsType} ${m.source} on ${m.mountPoint}`;
  const linkKey = (l: NetworkLink) => (l.master ? `${l.name} (master ${l.master})` : l.name);
  const processKey = (p: HostProcess) => `${p.pid}/${p.startTime}`;

  const ignored = new Set([...(options.ignorePids ?? []), ...(scope?.daemonPids ?? [])]);
  const ours = scope ? processesOfScope(after.processes, scope) : undefined;
  const oldProcesses = new Set(before.processes.map(processKey));

  return {
    mounts: added(before.mounts, after.mounts, mountKey)
      .filter((m) => !scope || isScopeMount(m.mountPoint, scope))
      .map(mountKey),
    netns: added(before.netns, after.netns, (n) => n),
    cgroups: added(before.cgroups, after.cgroups, (c) => c).filter((c) => !scope || isScopeCgroupPath(c, scope)),
    processes: after.processes
      .filter((p) => !oldProcesses.has(processKey(p)) && !ignored.has(p.pid) && p.pid !== process.pid)
      .filter((p) => !ours || ours.has(p.pid))
      .map((p) => `pid ${p.pid} (parent ${p.ppid}${p.state === 'Z' ? ', zombie' : ''}): ${p.cmdline}`),
    links: added(before.links, after.links, linkKey)
      .filter((l) => !scope || isScopeLink(l, scope))
      .map(linkKey),
    files: added(before.files, after.files, (f) => f),
  };
}

export interface PodSelector {
  /** A namespace file of the pod (a bind-mounted netns, or /proc/<pid>/ns/<kind>). */
  namespacePaths?: readonly string[];
  /** Namespace inodes, when already known. */
  namespaceInodes?: readonly number[];
  /** Ids (sandbox and container ids) that the pod's cgroup paths contain. */
  ids?: readonly string[];
}

/**
 * Host processes that belong to a pod: those living in one of its namespaces, or in a cgroup
 * whose path names one of its ids. With this a test asserts that "no process other than the
 * containers exists for the pod". Do not pass host namespaces (a host-network pod's netns is
 * the host's: every process lives in it).
 */
export function processesOfPod(selector: PodSelector, processes: readonly HostProcess[] = listProcesses()): HostProcess[] {
  const inodes = new Set(selector.namespaceInodes ?? []);
  for (const path of selector.namespacePaths ?? []) inodes.add(statSync(path).ino);
  const ids = selector.ids ?? [];
  return processes.filter(
    (p) =>
      NAMESPACE_KINDS.some((kind) => inodes.has(p.namespaces[kind] ?? -1)) ||
      p.cgroups.some((cgroup) => ids.some((id) => cgroup.includes(id))),
  );
}

function added<T>(before: readonly T[], after: readonly T[], key: (item: T) => string): T[] {
  const old = new Set(before.map(key));
  return after.filter((item) => !old.has(key(item)));
}

function listLinks(): NetworkLink[] {
  return listDir('/sys/class/net').map((name) => {
    try {
      const master = readlinkSync(`/sys/class/net/${name}/master`).split('/').pop();
      return master ? { name, master } : { name };
    } catch {
      return { name };
    }
  });
}

function realpathOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

function walkDirs(dir: string): string[] {
  const dirs: string[] = [];
  for (const entry of safeReaddir(dir)) {
    if (!entry.isDirectory()) continue;
    const path = join(dir, entry.name);
    dirs.push(path, ...walkDirs(path));
  }
  return dirs;
}

/** Lists a tree without entering mount points: a mounted rootfs shows up as one entry (and in `mounts`). */
function walkFiles(dir: string, mountPoints: ReadonlySet<string>): string[] {
  const files: string[] = [];
  for (const entry of safeReaddir(dir)) {
    const path = join(dir, entry.name);
    files.push(`${fileType(path)} ${path}`);
    if (entry.isDirectory() && !mountPoints.has(path)) files.push(...walkFiles(path, mountPoints));
  }
  return files;
}

function fileType(path: string): string {
  try {
    const stat = lstatSync(path);
    if (stat.isSocket()) return 'socket';
    if (stat.isDirectory()) return 'dir';
    if (stat.isSymbolicLink()) return 'link';
    if (stat.isFIFO()) return 'fifo';
    return 'file';
  } catch {
    return 'gone';
  }
}

function safeReaddir(dir: string) {
  try {
    return readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

/**
 * Waits, for at most `timeoutMs`, until PID 1 has reaped the zombies of `scope` it adopted: after
 * a crash of kuasard, container processes and PID-namespace holders are PID 1's children, and
 * some inits reap only now and then. Zombies that `before` already held are not waited for.
 */
export async function untilInitReaped(scope: LeakScope, options: { before?: HostSnapshot; timeoutMs?: number } = {}): Promise<void> {
  const known = new Set(options.before?.processes.map((p) => `${p.pid}/${p.startTime}`));
  const zombiesOfInit = () =>
    [...processesOfScope(listProcesses(), scope)].filter((pid) => {
      const stat = readProcStat(pid);
      return stat?.ppid === 1 && stat.state === 'Z' && !known.has(`${pid}/${stat.startTime}`);
    });
  const deadline = Date.now() + (options.timeoutMs ?? 5_000);
  while (zombiesOfInit().length > 0 && Date.now() < deadline) await sleep(100);
}
