// Paths of the guest's `/` on the host: a guest path is looked up inside the container's rootfs
// the way the guest would see it, so that no symbolic link in the image can lead the daemon out
// of the rootfs (to read a module, or to make a mount point) — a link's target is taken inside
// the rootfs, and `..` never climbs above it.
import type { BigIntStats } from 'node:fs';
import { lstat, mkdir, readlink, writeFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { failedPrecondition, invalidArgument } from '../../base/errors.js';

/** Symbolic links followed before a path is taken for a loop (Linux's own limit). */
const MAX_LINKS = 40;

export interface ResolveOptions {
  /**
   * Make what is missing: directories on the way, and the last component as an empty file or a
   * directory (a mount point). Without it, a missing component is an error.
   */
  create?: 'file' | 'directory';
}

/**
 * The host path of `guestPath` inside `rootfs`, every symbolic link on the way followed inside
 * the rootfs (an absolute target starting again at its top). `what` names the path in errors.
 */
export async function resolveInRootfs(rootfs: string, guestPath: string, what: string, options: ResolveOptions = {}): Promise<string> {
  return (await findInRootfs(rootfs, guestPath, what, options)).path;
}

/** What resolveInRootfs found, and what lstat said of it (no symbolic link): none when it was made or is the rootfs. */
export interface FoundInRootfs {
  path: string;
  stats: BigIntStats | undefined;
}

/** resolveInRootfs, with the lstat of what the path names: its caller needs no second look. */
export async function findInRootfs(rootfs: string, guestPath: string, what: string, options: ResolveOptions = {}): Promise<FoundInRootfs> {
  const pending = guestPath.split('/').filter(Boolean);
  const resolved: string[] = [];
  let stats: BigIntStats | undefined;
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      resolved.pop();
      stats = undefined;
      continue;
    }
    const host = posix.join(rootfs, ...resolved, part);
    const info = await lstat(host, { bigint: true }).catch((err: NodeJS.ErrnoException) => err);
    if (info instanceof Error) {
      if (info.code !== 'ENOENT' || !options.create) throw lookupError(what, info);
      // Neither mkdir nor an exclusive create follows a link that appeared meanwhile: they fail.
      await makeMissing(host, pending.length === 0 ? options.create : 'directory', what);
      resolved.push(part);
      stats = undefined;
      continue;
    }
    if (!info.isSymbolicLink()) {
      resolved.push(part);
      stats = info;
      continue;
    }
    if (++links > MAX_LINKS) throw invalidArgument(`${what}: too many levels of symbolic links`);
    const target = await readlink(host);
    if (target.startsWith('/')) resolved.length = 0;
    pending.unshift(...target.split('/').filter(Boolean));
  }
  return { path: posix.join(rootfs, ...resolved), stats };
}

function lookupError(what: string, err: NodeJS.ErrnoException) {
  if (err.code === 'ENOENT') return invalidArgument(`${what}: no such file in the container's image`);
  if (err.code === 'ENOTDIR') return invalidArgument(`${what}: a part of the path is not a directory in the container's image`);
  return failedPrecondition(`${what}: ${err.message}`);
}

async function makeMissing(host: string, kind: 'file' | 'directory', what: string): Promise<void> {
  try {
    if (kind === 'directory') await mkdir(host, { mode: 0o755 });
    else await writeFile(host, '', { flag: 'wx', mode: 0o644 });
  } catch (err) {
    throw failedPrecondition(
      `${what}: cannot create ${kind === 'file' ? 'the file' : 'the directory'} in the container's rootfs: ${(err as Error).message}`,
    );
  }
}
