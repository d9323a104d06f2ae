// The host's mount table (/proc/self/mountinfo) and unmounting a whole directory tree.
import { readFileSync } from 'node:fs';
import { run } from './exec.js';

export interface MountEntry {
  id: number;
  mountPoint: string;
  fsType: string;
  source: string;
}

export function readMounts(): MountEntry[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      // "<id> <parent> <major:minor> <root> <mount point> <options> [optional...] - <type> <source> <super options>"
      const [left = '', right = ''] = line.split(' - ');
      const fields = left.split(' ');
      const [fsType = '', source = ''] = right.split(' ');
      return { id: Number(fields[0]), mountPoint: unescapeMountinfo(fields[4] ?? ''), fsType, source: unescapeMountinfo(source) };
    });
}

/** Mount points of every cgroup hierarchy (v1 controllers and the v2 unified one). */
export function cgroupHierarchies(mounts: readonly MountEntry[] = readMounts()): string[] {
  return mounts.filter((m) => m.fsType === 'cgroup' || m.fsType === 'cgroup2').map((m) => m.mountPoint);
}

export function isUnder(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir.endsWith('/') ? dir : `${dir}/`);
}

/**
 * Unmounts every mount at or below `dir`, deepest first. A mount point can be stacked several
 * times, so it loops until the table holds none; a mount that refuses (busy) is detached lazily
 * so the directory can still be removed.
 */
export async function unmountUnder(dir: string): Promise<void> {
  for (let round = 0; round < 10; round++) {
    const below = readMounts()
      .filter((m) => isUnder(m.mountPoint, dir))
      .sort((a, b) => depth(b.mountPoint) - depth(a.mountPoint) || b.id - a.id);
    if (below.length === 0) return;
    for (const mount of below) {
      await run('umount', [mount.mountPoint]).catch(() => run('umount', ['--lazy', mount.mountPoint]).catch(() => undefined));
    }
  }
  const left = readMounts().filter((m) => isUnder(m.mountPoint, dir));
  if (left.length > 0) throw new Error(`could not unmount ${left.map((m) => m.mountPoint).join(', ')}`);
}

function depth(path: string): number {
  return path.split('/').length;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo octal. */
function unescapeMountinfo(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}
