// Mounting and unmounting: containerd snapshot mounts (bind, rbind, overlay, ...), bind mounts,
// and recursive teardown. Options are translated the way mount(8) and containerd translate them:
// flag words become mount(2) flags, propagation words become a separate mount(2) call (the kernel
// takes propagation changes alone), and every other word goes into the data string.

import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { invalidArgument } from '../base/errors.js';
import type { Mount } from '../base/model.js';
import { hasErrnoCode } from './libc/binding.js';
import { mount, MNT, MOUNT_ATTR, mountSetAttr, MS, umount2 } from './libc/mounts.js';
import { mountsAt, mountsUnder, propagationOf, readMountInfo } from './mountinfo.js';

export interface ParsedMountOptions {
  /** Flags for the mount(2) call that creates (or remounts) the mount. */
  flags: number;
  /** Propagation flags (MS_PRIVATE, MS_SHARED, ... possibly with MS_REC), applied by a call of their own. */
  propagation: number;
  /** File-system specific options, comma-joined (overlay's lowerdir=..., tmpfs's size=...). */
  data: string;
}

/** One mount(2) call. */
export interface MountCall {
  source: string | null;
  target: string;
  fstype: string | null;
  flags: number;
  data: string | null;
}

/** The kernel copies at most one page of mount data; longer strings would be cut silently. */
export const MOUNT_DATA_LIMIT = 4096;

const setFlags: Record<string, number> = {
  ro: MS.RDONLY,
  nosuid: MS.NOSUID,
  nodev: MS.NODEV,
  noexec: MS.NOEXEC,
  sync: MS.SYNCHRONOUS,
  dirsync: MS.DIRSYNC,
  remount: MS.REMOUNT,
  mand: MS.MANDLOCK,
  noatime: MS.NOATIME,
  nodiratime: MS.NODIRATIME,
  nosymfollow: MS.NOSYMFOLLOW,
  bind: MS.BIND,
  rbind: MS.BIND | MS.REC,
  relatime: MS.RELATIME,
  strictatime: MS.STRICTATIME,
  lazytime: MS.LAZYTIME,
};

const clearFlags: Record<string, number> = {
  defaults: 0,
  rw: MS.RDONLY,
  suid: MS.NOSUID,
  dev: MS.NODEV,
  exec: MS.NOEXEC,
  async: MS.SYNCHRONOUS,
  nomand: MS.MANDLOCK,
  atime: MS.NOATIME,
  diratime: MS.NODIRATIME,
  norelatime: MS.RELATIME,
  nostrictatime: MS.STRICTATIME,
  nolazytime: MS.LAZYTIME,
};

const propagationFlags: Record<string, number> = {
  private: MS.PRIVATE,
  rprivate: MS.PRIVATE | MS.REC,
  shared: MS.SHARED,
  rshared: MS.SHARED | MS.REC,
  slave: MS.SLAVE,
  rslave: MS.SLAVE | MS.REC,
  unbindable: MS.UNBINDABLE,
  runbindable: MS.UNBINDABLE | MS.REC,
};

/** Options containerd handles itself rather than the kernel; we have no support for them yet. */
const unsupported = new Set(['loop']);

/** Later words win over earlier ones, as with mount(8): "ro,rw" is read-write. */
export function parseMountOptions(options: readonly string[]): ParsedMountOptions {
  let flags = 0;
  let propagation = 0;
  const data: string[] = [];
  for (const option of options) {
    if (unsupported.has(option) || option.startsWith('X-containerd.')) {
      throw invalidArgument(`mount option ${JSON.stringify(option)} is not supported`);
    }
    if (option in setFlags) flags |= setFlags[option]!;
    else if (option in clearFlags) flags &= ~clearFlags[option]!;
    else if (option in propagationFlags) propagation = propagationFlags[option]!;
    else data.push(option);
  }
  return { flags, propagation, data: data.join(',') };
}

// A bind mount ignores every flag but MS_REC when it is created; these only take effect through
// a remount of the new bind mount.
const perMountFlags =
  MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.NOATIME | MS.NODIRATIME | MS.RELATIME | MS.STRICTATIME | MS.NOSYMFOLLOW;

/** The mount(2) calls that put `m` at `target`, in order. Pure: it touches nothing. */
export function mountCalls(m: Pick<Mount, 'type' | 'source' | 'options'>, target: string): MountCall[] {
  const { flags, propagation, data } = parseMountOptions(m.options);
  if (Buffer.byteLength(data) + 1 > MOUNT_DATA_LIMIT) {
    const layers = /(?:^|,)lowerdir=([^,]*)/.exec(data)?.[1]?.split(':').length;
    throw invalidArgument(
      `${m.type} mount at ${target}: options are ${Buffer.byteLength(data)} bytes, over mount(2)'s ` +
        `${MOUNT_DATA_LIMIT}-byte limit${layers ? ` (${layers} lower layers)` : ''}`,
    );
  }
  const calls: MountCall[] = [];
  const onlyPropagation = propagation !== 0 && flags === 0 && data === '' && (m.type === '' || m.type === 'none');
  if (!onlyPropagation) {
    calls.push({ source: m.source, target, fstype: m.type, flags, data: data === '' ? null : data });
    const isNewBind = (flags & MS.BIND) !== 0 && (flags & MS.REMOUNT) === 0;
    if (isNewBind && (flags & perMountFlags) !== 0) {
      // Only the top mount of an rbind becomes read-only this way; submounts keep their flags.
      calls.push({ source: null, target, fstype: null, flags: (flags & ~MS.REC) | MS.REMOUNT, data: null });
    }
  }
  if (propagation !== 0) calls.push({ source: null, target, fstype: null, flags: propagation, data: null });
  return calls;
}

const propagationMask = MS.PRIVATE | MS.SHARED | MS.SLAVE | MS.UNBINDABLE;

/** True for a call that makes a new mount (not a remount, not a propagation change). */
function createsMount(call: MountCall): boolean {
  return (call.flags & (MS.REMOUNT | propagationMask)) === 0;
}

/**
 * Mounts `m` at `target` (the calls of mountCalls). If a later call fails, the new mount is
 * taken off again. Returns whether a new mount was made (false for remounts and propagation changes).
 */
export async function mountOne(m: Pick<Mount, 'type' | 'source' | 'options'>, target: string): Promise<boolean> {
  const calls = mountCalls(m, target);
  const created = calls.length > 0 && createsMount(calls[0]!);
  for (const [index, call] of calls.entries()) {
    try {
      mount(call.source, call.target, call.fstype, call.flags, call.data);
    } catch (err) {
      if (created && index > 0) await unmountTop(target).catch(() => undefined);
      throw err;
    }
  }
  return created;
}

function resolveTarget(root: string, m: Mount): string {
  if (!m.target) return root;
  const resolved = path.resolve(root, `./${m.target}`);
  if (resolved !== root && !resolved.startsWith(`${root}/`)) {
    throw invalidArgument(`mount target ${JSON.stringify(m.target)} escapes ${root}`);
  }
  return resolved;
}

/**
 * Mounts containerd's mounts for a rootfs at `target`, in order (each on top of the previous
 * ones, or at its own `target` below it: relative to `target`, empty for `target` itself). On
 * failure, the mounts already made are undone.
 */
export async function mountAll(mounts: readonly Mount[], target: string): Promise<void> {
  const root = path.resolve(target);
  const created: string[] = [];
  try {
    for (const m of mounts) {
      const at = resolveTarget(root, m);
      if (await mountOne(m, at)) created.push(at);
    }
  } catch (err) {
    for (const at of created.reverse()) await unmountTop(at).catch(() => undefined);
    throw err;
  }
}

export interface UnmountOptions {
  /** How often to retry an unmount that fails with EBUSY before detaching lazily. Default 10. */
  busyRetries?: number;
  /** Delay between EBUSY retries. Default 20 ms. */
  busyDelayMs?: number;
}

/** Unmounts `target` once; on persistent EBUSY falls back to MNT_DETACH. False if nothing was mounted. */
async function unmountTop(target: string, options: UnmountOptions = {}): Promise<boolean> {
  const retries = options.busyRetries ?? 10;
  for (let attempt = 0; ; attempt++) {
    try {
      return unmountOnce(target, attempt > retries ? MNT.DETACH : 0);
    } catch (err) {
      if (!hasErrnoCode(err, 'EBUSY') || attempt > retries) throw err;
      await sleep(options.busyDelayMs ?? 20);
    }
  }
}

/** One umount2 of `target`; false when nothing is mounted there (EINVAL), or it is not even there (ENOENT). */
function unmountOnce(target: string, flags: number): boolean {
  try {
    umount2(target, flags);
    return true;
  } catch (err) {
    if (hasErrnoCode(err, 'EINVAL', 'ENOENT')) return false;
    throw err;
  }
}

/** Unmounts every mount stacked at `target` (not those below it). Returns how many it removed. */
export async function unmountAll(target: string, options: UnmountOptions = {}): Promise<number> {
  let count = 0;
  while (await unmountTop(target, options)) count++;
  return count;
}

/**
 * Detaches the mounts stacked at `target` together with every mount below them (umount2 with
 * MNT_DETACH takes a whole tree), without reading the mount table. For a tree this process made
 * and whose files nothing holds open any more: a detached mount still in use lives on, out of
 * sight, until its last user lets go. Returns how many mounts were stacked at `target`.
 */
export function detachTree(target: string): number {
  let count = 0;
  while (unmountOnce(target, MNT.DETACH)) count++;
  return count;
}

/**
 * Unmounts everything at or below `prefix`, deepest first, detaching what stays busy. Throws when
 * a mount under `prefix` survives.
 */
export async function unmountRecursive(prefix: string, options: UnmountOptions = {}): Promise<void> {
  const mounts = await mountsUnder(prefix);
  const points = [...new Set(mounts.map((m) => m.mountPoint))].sort((a, b) => b.split('/').length - a.split('/').length);
  for (const point of points) await unmountAll(point, options);
  const left = await mountsUnder(prefix);
  if (left.length > 0) {
    throw new Error(`unmount ${prefix}: still mounted: ${[...new Set(left.map((m) => m.mountPoint))].join(', ')}`);
  }
}

export interface AddFlagsOptions {
  /** Also every mount below `target` (those an rbind brought along, those mounted inside it). */
  recursive?: boolean;
}

/**
 * Adds per-mount flag words (`ro`, `nosymfollow`, `nodev`, ...) to the mount at `target`, each
 * mount keeping the flags it has (a bind remount replaces them all). Only these mount points
 * change (MS_REMOUNT|MS_BIND), never the file systems behind them nor their other mounts.
 */
export async function addMountFlags(target: string, words: readonly string[], options: AddFlagsOptions = {}): Promise<void> {
  const added = parseMountOptions(words);
  if (added.propagation !== 0 || added.data !== '' || (added.flags & ~perMountFlags) !== 0) {
    throw invalidArgument(`addMountFlags ${target}: ${JSON.stringify(words)} are not all per-mount flags`);
  }
  // One call for the whole tree, where the kernel can: reading the mount table costs as much as
  // the host has mounts (a node running many containers has thousands), at every container.
  const attributes = mountAttributes(added.flags);
  if (attributes !== undefined) {
    try {
      if (mountSetAttr(target, attributes, options.recursive === true)) return;
    } catch (err) {
      // The attributes are valid: the kernel refuses a path that is not a mount's root.
      if (hasErrnoCode(err, 'EINVAL')) throw invalidArgument(`${target} is not a mount point (${(err as Error).message})`);
      throw err;
    }
  }
  const table = await readMountInfo();
  const own = await mountsAt(target, table);
  if (own.length === 0) throw invalidArgument(`${target} is not a mount point`);
  const root = own[0]!.mountPoint;
  const mounts = options.recursive ? await mountsUnder(target, table) : own;
  // The table lists a stack bottom first; a path reaches (and remounts) the top of its stack.
  const tops = new Map(mounts.map((m) => [m.mountPoint, m]));
  for (const [point, top] of tops) {
    const kept = parseMountOptions(top.options).flags & perMountFlags;
    try {
      mount(null, point, null, MS.REMOUNT | MS.BIND | kept | added.flags, null);
    } catch (err) {
      // A mount below `target` that a later mount hid (one on a parent path) is out of reach of
      // every path, this one's included: there is nothing to change on the way to it.
      if (point === root || !hasErrnoCode(err, 'EINVAL', 'ENOENT')) throw err;
    }
  }
}

/** The mount_setattr(2) attributes for mount(2) flags, when it can set every one of them (not the atime ones). */
function mountAttributes(flags: number): number | undefined {
  const pairs: [number, number][] = [
    [MS.RDONLY, MOUNT_ATTR.RDONLY],
    [MS.NOSUID, MOUNT_ATTR.NOSUID],
    [MS.NODEV, MOUNT_ATTR.NODEV],
    [MS.NOEXEC, MOUNT_ATTR.NOEXEC],
    [MS.NODIRATIME, MOUNT_ATTR.NODIRATIME],
    [MS.NOSYMFOLLOW, MOUNT_ATTR.NOSYMFOLLOW],
  ];
  let attributes = 0;
  let left = flags;
  for (const [flag, attribute] of pairs) {
    if ((flags & flag) === 0) continue;
    attributes |= attribute;
    left &= ~flag;
  }
  return left === 0 ? attributes : undefined;
}

/**
 * Makes `dir` a mount point of its own with private propagation (binding it onto itself when it
 * is not a mount point yet), as `ip netns` does for /run/netns. Mounts made inside it (such as
 * nsfs bind mounts pinning namespaces) then stay out of every other mount namespace, and its
 * propagation no longer depends on what the host made of "/" (systemd makes it shared).
 * Idempotent.
 */
export async function makePrivateBindOfItself(dir: string): Promise<void> {
  const stack = await mountsAt(dir);
  const top = stack[stack.length - 1];
  if (top && propagationOf(top) === 'private') return;
  if (!top) mount(dir, dir, null, MS.BIND | MS.REC, null);
  mount(null, dir, null, MS.PRIVATE | MS.REC, null);
}

/**
 * Undoes makePrivateBindOfItself's bind when nothing is mounted below it any more. Only a bind of
 * `dir` onto itself is removed (its file system's path is the one `dir` has on the mount below),
 * never a file system someone mounted at `dir`; and never lazily: while a mount below it remains,
 * the kernel refuses (EBUSY) and it stays. Returns whether it was unmounted.
 */
export async function unmountPrivateBindOfItself(dir: string): Promise<boolean> {
  const table = await readMountInfo();
  const top = (await mountsAt(dir, table)).at(-1);
  const parent = top && table.find((m) => m.id === top.parentId);
  if (!top || !parent || top.device !== parent.device) return false;
  if (top.root !== path.posix.join(parent.root, path.posix.relative(parent.mountPoint, top.mountPoint))) return false;
  try {
    umount2(top.mountPoint, 0);
    return true;
  } catch (err) {
    if (hasErrnoCode(err, 'EBUSY')) return false;
    throw err;
  }
}
