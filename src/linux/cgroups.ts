// Where a container's cgroups live on this host, so they can be found, checked for leaks,
// removed, and read for stats (cgroup-stats.ts). The layout is read from the mount table:
//   legacy  - cgroup v1 hierarchies only (one per controller or group, plus named ones such as
//             name=systemd);
//   hybrid  - v1 hierarchies for the controllers, plus an (often empty) cgroup2 tree at
//             /sys/fs/cgroup/unified;
//   unified - one cgroup2 tree at /sys/fs/cgroup.
// A runc cgroupsPath maps to one directory in every hierarchy, as runc's cgroupfs driver maps it:
// an absolute path hangs below the hierarchy's mount point; a relative one below the cgroup of
// the process that runs runc (which is us). The systemd driver's "slice:prefix:name" form is not
// supported: its directories depend on how systemd expands the slice name.

import { mkdir, readdir, readFile, rmdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { failedPrecondition, invalidArgument, unimplemented } from '../base/errors.js';
import { hasErrnoCode } from './libc/binding.js';
import { readMountInfo, type MountInfo } from './mountinfo.js';

export interface CgroupHierarchy {
  version: 1 | 2;
  mountPoint: string;
  /** The cgroup (path inside the hierarchy) mounted at mountPoint; "/" unless we are in a cgroup namespace or a bind. */
  root: string;
  /** v1: the controllers bound to this hierarchy, with named ones as "name=<name>". v2: empty. */
  controllers: string[];
}

export interface CgroupLayout {
  mode: 'legacy' | 'hybrid' | 'unified';
  hierarchies: CgroupHierarchy[];
}

// cgroup v1 mount options that are not controller names.
const v1MountOptions = new Set(['rw', 'ro', 'none', 'noprefix', 'xattr', 'clone_children', 'cpuset_v2_mode', 'favordynmods', 'all']);

/** The layout described by a mount table. Each hierarchy is listed once, at its first mount point. */
export function parseCgroupLayout(mounts: readonly MountInfo[]): CgroupLayout {
  const seen = new Set<string>();
  const hierarchies: CgroupHierarchy[] = [];
  for (const m of mounts) {
    if ((m.fsType !== 'cgroup' && m.fsType !== 'cgroup2') || seen.has(m.device)) continue;
    seen.add(m.device);
    const version = m.fsType === 'cgroup2' ? 2 : 1;
    const controllers = version === 2 ? [] : m.superOptions.filter((o) => !v1MountOptions.has(o) && !o.startsWith('release_agent='));
    hierarchies.push({ version, mountPoint: m.mountPoint, root: m.root, controllers });
  }
  const v1 = hierarchies.some((h) => h.version === 1);
  const v2 = hierarchies.some((h) => h.version === 2);
  return { mode: v1 ? (v2 ? 'hybrid' : 'legacy') : 'unified', hierarchies };
}

export async function detectCgroupLayout(): Promise<CgroupLayout> {
  return parseCgroupLayout(await readMountInfo());
}

let hostLayout: Promise<CgroupLayout> | undefined;

/** The host's cgroup layout, read once: hierarchies are mounted at boot, not while we run. */
export function hostCgroupLayout(): Promise<CgroupLayout> {
  hostLayout ??= detectCgroupLayout().catch((err: unknown) => {
    hostLayout = undefined;
    throw err;
  });
  return hostLayout;
}

/** One line of /proc/<pid>/cgroup: "hierarchy-id:controller-list:path". */
export interface ProcessCgroup {
  hierarchyId: number;
  controllers: string[];
  path: string;
}

export function parseProcCgroup(text: string): ProcessCgroup[] {
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      const first = line.indexOf(':');
      const second = line.indexOf(':', first + 1);
      const list = line.slice(first + 1, second);
      return { hierarchyId: Number(line.slice(0, first)), controllers: list ? list.split(',') : [], path: line.slice(second + 1) };
    });
}

/** The cgroup of a process in `hierarchy`, as a path inside it. */
function cgroupIn(hierarchy: CgroupHierarchy, own: readonly ProcessCgroup[]): string | undefined {
  const entry =
    hierarchy.version === 2
      ? own.find((c) => c.hierarchyId === 0)
      : own.find((c) => c.controllers.some((name) => hierarchy.controllers.includes(name)));
  return entry?.path;
}

/** systemd driver paths look like "system.slice:cri-containerd:<id>". */
export function isSystemdCgroupsPath(cgroupsPath: string): boolean {
  return /^[^/:]*:[^/:]*:[^/:]*$/.test(cgroupsPath);
}

function checkCgroupsPath(cgroupsPath: string): void {
  if (isSystemdCgroupsPath(cgroupsPath)) {
    throw unimplemented(`systemd cgroups path ${JSON.stringify(cgroupsPath)}: only cgroupfs paths are supported`);
  }
  if (cgroupsPath === '' || cgroupsPath.split('/').some((part) => part === '..' || part === '.')) {
    throw invalidArgument(`invalid cgroups path ${JSON.stringify(cgroupsPath)}`);
  }
}

/** Where a cgroups path lands in one hierarchy. */
export interface CgroupPlace {
  hierarchy: CgroupHierarchy;
  dir: string;
}

/**
 * The directory that `cgroupsPath` (OCI linux.cgroupsPath, cgroupfs form) maps to in every
 * hierarchy of this host, whether it exists or not. `own` is the cgroup of the process that runs
 * runc (this one), which relative paths hang below.
 */
export function cgroupPlacesFor(cgroupsPath: string, layout: CgroupLayout, own: readonly ProcessCgroup[] = []): CgroupPlace[] {
  checkCgroupsPath(cgroupsPath);
  const places: CgroupPlace[] = [];
  for (const hierarchy of layout.hierarchies) {
    if (path.posix.isAbsolute(cgroupsPath)) {
      places.push({ hierarchy, dir: path.posix.join(hierarchy.mountPoint, cgroupsPath) });
      continue;
    }
    const parent = cgroupIn(hierarchy, own);
    if (parent === undefined) continue;
    // Our cgroup is given from the hierarchy's root; the mount may show only a subtree of it.
    const below = path.posix.relative(hierarchy.root, parent);
    if (below.startsWith('..')) continue;
    places.push({ hierarchy, dir: path.posix.join(hierarchy.mountPoint, below, cgroupsPath) });
  }
  return places;
}

/** The directories of cgroupPlacesFor, one per hierarchy. */
export function cgroupDirsFor(cgroupsPath: string, layout: CgroupLayout, own: readonly ProcessCgroup[] = []): string[] {
  return cgroupPlacesFor(cgroupsPath, layout, own).map((place) => place.dir);
}

/** Where `cgroupsPath` lands on this host, with relative paths taken below our own cgroup. */
export async function cgroupPlaces(cgroupsPath: string, layout?: CgroupLayout): Promise<CgroupPlace[]> {
  const own = parseProcCgroup(await readFile('/proc/self/cgroup', 'utf8'));
  return cgroupPlacesFor(cgroupsPath, layout ?? (await detectCgroupLayout()), own);
}

async function isDirectory(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

/** The directories of `cgroupsPath` that exist now. */
export async function existingCgroupDirs(cgroupsPath: string, layout?: CgroupLayout): Promise<string[]> {
  const dirs = (await cgroupPlaces(cgroupsPath, layout)).map((place) => place.dir);
  const exists = await Promise.all(dirs.map(isDirectory));
  return dirs.filter((_, i) => exists[i]);
}

/**
 * Moves `pid` into the cgroup `cgroupsPath`, making its directory (as runc does for a container)
 * in every hierarchy where its parent exists; hierarchies without the parent are left alone.
 * Returns the directories it joined. A new v1 cpuset cgroup starts with no CPUs and no memory
 * nodes, where no process may live: like runc, it gets its parent's.
 */
export async function joinCgroup(
  cgroupsPath: string,
  pid: number,
  layout?: CgroupLayout,
  /** Run on each cgroup made, before the process joins it (a setting that must hold as it joins). */
  prepare?: (place: CgroupPlace) => Promise<void>,
): Promise<string[]> {
  const joined: string[] = [];
  for (const place of await cgroupPlaces(cgroupsPath, layout)) {
    if (!(await isDirectory(path.posix.dirname(place.dir)))) continue;
    await makeCgroupDir(place);
    await prepare?.(place);
    await writeFile(path.join(place.dir, 'cgroup.procs'), String(pid));
    joined.push(place.dir);
  }
  return joined;
}

/**
 * Makes the cgroup at `place` and any of its missing ancestors, each ready for processes: a new
 * v1 cpuset cgroup starts with no CPUs and no memory nodes, and gets its parent's.
 */
export async function makeCgroupDir({ hierarchy, dir }: CgroupPlace): Promise<void> {
  if (dir === hierarchy.mountPoint || (await isDirectory(dir))) return;
  const parent = path.posix.dirname(dir);
  await makeCgroupDir({ hierarchy, dir: parent });
  await mkdir(dir).catch((err: unknown) => {
    if (!hasErrnoCode(err, 'EEXIST')) throw err;
  });
  if (hierarchy.version === 1 && hierarchy.controllers.includes('cpuset')) {
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      if ((await readFile(path.join(dir, file), 'utf8')).trim() === '')
        await writeFile(path.join(dir, file), await readFile(path.join(parent, file)));
    }
  }
}

/** `dir` and the cgroups nested below it, deepest first. */
async function subtreeDeepestFirst(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch((err: unknown) => {
    if (hasErrnoCode(err, 'ENOENT')) return [];
    throw err;
  });
  const nested = await Promise.all(entries.filter((e) => e.isDirectory()).map((e) => subtreeDeepestFirst(path.join(dir, e.name))));
  return [...nested.flat(), dir];
}

export interface RemoveCgroupOptions {
  /** How long to keep retrying while the cgroup is busy (its last processes are still exiting). Default 2000 ms. */
  busyTimeoutMs?: number;
  layout?: CgroupLayout;
}

async function removeDir(dir: string, deadline: number): Promise<void> {
  for (;;) {
    try {
      await rmdir(dir);
      return;
    } catch (err) {
      if (hasErrnoCode(err, 'ENOENT')) return;
      if (!hasErrnoCode(err, 'EBUSY') || Date.now() >= deadline) {
        const procs = (await readFile(path.join(dir, 'cgroup.procs'), 'utf8').catch(() => '')).trim().split('\n').filter(Boolean);
        const holders = procs.length > 0 ? ` (processes still in it: ${procs.join(' ')})` : '';
        throw failedPrecondition(`remove cgroup ${dir}: ${(err as { code?: string }).code ?? (err as Error).message}${holders}`);
      }
      await sleep(20);
    }
  }
}

/**
 * Removes the cgroup `cgroupsPath` in every hierarchy, nested cgroups first. Missing directories
 * are fine; a cgroup that still holds processes after the timeout is an error naming them. The
 * parents (such as /k8s.io) are shared with other containers and left alone.
 */
export async function removeCgroup(cgroupsPath: string, options: RemoveCgroupOptions = {}): Promise<void> {
  const deadline = Date.now() + (options.busyTimeoutMs ?? 2000);
  const failures: Error[] = [];
  for (const dir of await existingCgroupDirs(cgroupsPath, options.layout)) {
    try {
      for (const cgroup of await subtreeDeepestFirst(dir)) await removeDir(cgroup, deadline);
    } catch (err) {
      failures.push(err as Error);
    }
  }
  if (failures.length === 1) throw failures[0];
  if (failures.length > 1) throw failedPrecondition(failures.map((f) => f.message).join('; '));
}
