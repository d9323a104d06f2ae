// mount(2), umount2(2) and mount_setattr(2) through libc; linux/mount.ts builds on them.

import { check, hasErrnoCode, libcGroup } from './binding.js';

interface MountCalls {
  mount: (source: string | null, target: string, fstype: string | null, flags: number, data: string | null) => number;
  umount2: (target: string, flags: number) => number;
}

const libc = libcGroup<MountCalls>((lib) => ({
  mount: lib.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)'),
  umount2: lib.func('int umount2(const char *target, int flags)'),
}));

/** mount(2) flags (from <sys/mount.h>). */
export const MS = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  SYNCHRONOUS: 0x10,
  REMOUNT: 0x20,
  MANDLOCK: 0x40,
  DIRSYNC: 0x80,
  NOSYMFOLLOW: 0x100,
  NOATIME: 0x400,
  NODIRATIME: 0x800,
  BIND: 0x1000,
  MOVE: 0x2000,
  REC: 0x4000,
  SILENT: 0x8000,
  UNBINDABLE: 0x20000,
  PRIVATE: 0x40000,
  SLAVE: 0x80000,
  SHARED: 0x100000,
  RELATIME: 0x200000,
  STRICTATIME: 0x1000000,
  LAZYTIME: 0x2000000,
} as const;

/** umount2(2) flags. */
export const MNT = { FORCE: 0x1, DETACH: 0x2, EXPIRE: 0x4, NOFOLLOW: 0x8 } as const;

export function mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void {
  check(`mount ${source ?? 'none'} on ${target}`, libc().mount(source, target, fstype, flags, data));
}

export function umount2(target: string, flags = 0): void {
  check(`umount ${target}`, libc().umount2(target, flags));
}

/**
 * mount_setattr(2): changes flags of a mount, or of a whole tree of them in one call, with no
 * look at the mount table. Linux 5.12 and glibc 2.36 have it; where either lacks it, the group
 * is null and callers change each mount with mount(2).
 */
const setAttrCalls = libcGroup((lib, koffi) => {
  koffi.struct('kuasar_mount_attr', { attr_set: 'uint64_t', attr_clr: 'uint64_t', propagation: 'uint64_t', userns_fd: 'uint64_t' });
  try {
    return {
      mount_setattr: lib.func(
        'int mount_setattr(int dirfd, const char *path, unsigned int flags, kuasar_mount_attr *attr, size_t size)',
      ) as (
        dirfd: number,
        path: string,
        flags: number,
        attr: { attr_set: number; attr_clr: number; propagation: number; userns_fd: number },
        size: number,
      ) => number,
    };
  } catch {
    return null;
  }
});

/** mount_setattr(2) attributes, for the per-mount flags it can set. */
export const MOUNT_ATTR = { RDONLY: 0x1, NOSUID: 0x2, NODEV: 0x4, NOEXEC: 0x8, NODIRATIME: 0x80, NOSYMFOLLOW: 0x200000 } as const;
const AT_FDCWD = -100;
const AT_RECURSIVE = 0x8000;
const MOUNT_ATTR_SIZE = 32;

/**
 * Sets `attributes` (MOUNT_ATTR) on the mount at `target`, and with `recursive` on every mount
 * below it too, each keeping its other flags. False, with nothing changed, where the kernel or
 * libc has no mount_setattr.
 */
export function mountSetAttr(target: string, attributes: number, recursive: boolean): boolean {
  const calls = setAttrCalls();
  if (!calls) return false;
  const attr = { attr_set: attributes, attr_clr: 0, propagation: 0, userns_fd: 0 };
  try {
    check(`mount_setattr ${target}`, calls.mount_setattr(AT_FDCWD, target, recursive ? AT_RECURSIVE : 0, attr, MOUNT_ATTR_SIZE));
  } catch (err) {
    if (hasErrnoCode(err, 'ENOSYS')) return false;
    throw err;
  }
  return true;
}
