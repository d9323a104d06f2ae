// Which host objects belong to one development environment. Other environments, other test
// suites and other people may use the host at the same time, so an environment's objects are
// recognised by what ties them to it (its directory, its cgroup, its bridge, its daemons) and
// everything else is left alone: by teardown, and by leak checks given a scope.
import { isWithin as isUnder } from '../linux/mountinfo.js';
import type { HostProcess } from './processes.js';

/** What belongs to one environment (Environment.scope gives it). */
export interface LeakScope {
  /** The environment's private directory. */
  dir: string;
  /** Its cgroup directory name (the pods' cgroup parent). */
  cgroupName: string;
  /** Its bridge. */
  bridge: string;
  /** Its long-lived daemons (containerd, kuasard): ignored by leak checks, their descendants counted. */
  daemonPids: readonly number[];
}

/**
 * Where named network namespaces live (`ip netns`, CNI tools): shared by everyone, so always
 * checked. /var/run is usually a link to /run; both are listed for hosts where it is not.
 */
export const NETNS_DIRS = ['/run/netns', '/var/run/netns'] as const;

/**
 * The pids of the processes tied to the scope: one of its daemons, naming its directory
 * (containerd's shims carry `-address <dir>/containerd.sock`; kuasard's fd keeper, which outlives
 * kuasard on purpose, its control socket in kuasard's state directory), in its cgroup, or
 * descending from any of those (a container under its shim, a helper under kuasard). Teardown
 * kills them all, the fd keeper included.
 */
export function processesOfScope(processes: readonly HostProcess[], scope: LeakScope): Set<number> {
  const byPid = new Map(processes.map((p) => [p.pid, p]));
  const daemons = new Set(scope.daemonPids);
  const verdicts = new Map<number, boolean>();
  const isOurs = (p: HostProcess, seen: Set<number>): boolean => {
    const known = verdicts.get(p.pid);
    if (known !== undefined) return known;
    const tied = daemons.has(p.pid) || p.cmdline.includes(scope.dir) || p.cgroups.some((c) => isScopeCgroupPath(c, scope));
    const parent = byPid.get(p.ppid);
    const ours = tied || (parent !== undefined && !seen.has(parent.pid) && isOurs(parent, seen.add(p.pid)));
    verdicts.set(p.pid, ours);
    return ours;
  };
  return new Set(processes.filter((p) => isOurs(p, new Set())).map((p) => p.pid));
}

/** A mount of the scope: below its directory, or a named network namespace. */
export function isScopeMount(mountPoint: string, scope: LeakScope): boolean {
  return isUnder(mountPoint, scope.dir) || NETNS_DIRS.some((dir) => isUnder(mountPoint, dir));
}

/** A cgroup (a /sys/fs/cgroup/... directory or a /proc/<pid>/cgroup path) of the scope. */
export function isScopeCgroupPath(path: string, scope: LeakScope): boolean {
  return path.includes(`/${scope.cgroupName}/`) || path.endsWith(`/${scope.cgroupName}`);
}

/** The scope's bridge, or a link (a pod's veth) enslaved to it. */
export function isScopeLink(link: { name: string; master?: string }, scope: LeakScope): boolean {
  return link.name === scope.bridge || link.master === scope.bridge;
}
