// The host's mount table (/proc/self/mountinfo) and unmounting a whole directory tree.
import { readFileSync } from 'node:fs';
import { isWithin, parseMountInfo, type MountInfo } from '../linux/mountinfo.js';
import { run } from './exec.js';

/** What a leak snapshot keeps of a mount. */
export type MountEntry = Pick<MountInfo, 'id' | 'mountPoint' | 'fsType' | 'source'>;

/** The mount table now, read synchronously so that a leak snapshot is taken at one instant. */
export function readMounts(): MountInfo[] {
  return parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'));
}

/** Mount points of every cgroup hierarchy (v1 controllers and the v2 unified one). */
export function cgroupHierarchies(mounts: readonly MountEntry[] = readMounts()): string[] {
  return mounts.filter((m) => m.fsType === 'cgroup' || m.fsType === 'cgroup2').map((m) => m.mountPoint);
}

/**
 * Unmounts every mount at or below `dir`, deepest first. A mount point can be stacked several
 * times, so it loops until the table holds none; a mount that refuses (busy) is detached lazily
 * so the directory can still be removed.
 */
export async function unmountUnder(dir: string): Promise<void> {
  for (let round = 0; round < 10; round++) {
    const below = readMounts()
      .filter((m) => isWithin(m.mountPoint, dir))
      .sort((a, b) => depth(b.mountPoint) - depth(a.mountPoint) || b.id - a.id);
    if (below.length === 0) return;
    for (const mount of below) {
      await run('umount', [mount.mountPoint]).catch(() => run('umount', ['--lazy', mount.mountPoint]).catch(() => undefined));
    }
  }
  const left = readMounts().filter((m) => isWithin(m.mountPoint, dir));
  if (left.length > 0) throw new Error(`could not unmount ${left.map((m) => m.mountPoint).join(', ')}`);
}

function depth(path: string): number {
  return path.split('/').length;
}
