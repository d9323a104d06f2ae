// Reads the mount table from /proc/<pid>/mountinfo (see proc(5)). The kernel escapes space, tab,
// newline and backslash in paths as octal (\040, \011, \012, \134); they are unescaped here.

import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';

export interface MountInfo {
  id: number;
  parentId: number;
  /** st_dev of the file system, "major:minor". */
  device: string;
  /** The path inside the file system that is mounted here (not "/" for bind mounts of a subdir). */
  root: string;
  mountPoint: string;
  /** Per-mount options (ro, nosuid, relatime, ...). */
  options: string[];
  /** Propagation tags: "shared:N", "master:N", "propagate_from:N", "unbindable"; none = private. */
  optionalFields: string[];
  fsType: string;
  source: string;
  /** Per-superblock options (for cgroup v1 these name the controllers). */
  superOptions: string[];
}

export function unescapeMountPath(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

function parseLine(line: string): MountInfo {
  const fields = line.split(' ');
  const separator = fields.indexOf('-', 6);
  if (fields.length < 10 || separator < 0 || fields.length < separator + 4) {
    throw new Error(`malformed mountinfo line: ${JSON.stringify(line)}`);
  }
  return {
    id: Number(fields[0]),
    parentId: Number(fields[1]),
    device: fields[2]!,
    root: unescapeMountPath(fields[3]!),
    mountPoint: unescapeMountPath(fields[4]!),
    options: fields[5]!.split(','),
    optionalFields: fields.slice(6, separator),
    fsType: fields[separator + 1]!,
    source: unescapeMountPath(fields[separator + 2]!),
    superOptions: fields[separator + 3]!.split(','),
  };
}

export function parseMountInfo(text: string): MountInfo[] {
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map(parseLine);
}

export async function readMountInfo(pid: number | 'self' = 'self'): Promise<MountInfo[]> {
  return parseMountInfo(await readFile(`/proc/${pid}/mountinfo`, 'utf8'));
}

/** The mount's propagation type, from its optional fields. */
export function propagationOf(mount: MountInfo): 'shared' | 'slave' | 'private' | 'unbindable' {
  if (mount.optionalFields.some((f) => f.startsWith('shared:'))) return 'shared';
  if (mount.optionalFields.some((f) => f.startsWith('master:'))) return 'slave';
  if (mount.optionalFields.includes('unbindable')) return 'unbindable';
  return 'private';
}

/** The absolute path with symlinks resolved as far as it exists (mountinfo lists real paths). */
async function canonical(p: string): Promise<string> {
  const absolute = path.resolve(p);
  try {
    return await realpath(absolute);
  } catch {
    return absolute;
  }
}

/** True when `p` is under `prefix` or is `prefix` itself, comparing whole path components. */
export function isWithin(p: string, prefix: string): boolean {
  if (prefix === '/') return p.startsWith('/');
  return p === prefix || p.startsWith(`${prefix}/`);
}

/** The mounts whose mount point is `p` itself, bottom of the stack first. */
export async function mountsAt(p: string, table?: MountInfo[]): Promise<MountInfo[]> {
  const target = await canonical(p);
  return (table ?? (await readMountInfo())).filter((m) => m.mountPoint === target);
}

export async function isMountPoint(p: string, table?: MountInfo[]): Promise<boolean> {
  return (await mountsAt(p, table)).length > 0;
}

/** The mounts at `prefix` or anywhere below it, in mount-table order (parents before children). */
export async function mountsUnder(prefix: string, table?: MountInfo[]): Promise<MountInfo[]> {
  const root = await canonical(prefix);
  return (table ?? (await readMountInfo())).filter((m) => isWithin(m.mountPoint, root));
}
