// The guest's file system on the host: the container's rootfs (a mount of its own) with every
// bind mount of the spec bound at its destination inside it, so that preopening the rootfs as
// `/` is all a module gets, nested mounts included. Everything made here lies below the rootfs
// mount, so unmounting the rootfs recursively (the container's Delete, which core also runs
// after a failed Create) takes it all away.
//
// Node's WASI looks up the last part of a path inside its preopen itself, but hands the parts
// before it to the kernel: a link such as `escape -> /` in the image or a volume would lead the
// module out to the host's own files. Every mount of the guest is therefore made nosymfollow
// (the kernel follows no link on it: ELOOP to the module); the daemon's own lookups read links
// without following them.
import { stat } from 'node:fs/promises';
import { failedPrecondition } from '../../base/errors.js';
import type { Mount } from '../../base/model.js';
import { addMountFlags, mountAll, mountOne } from '../../linux/mount.js';
import type { GuestFilesystem, GuestMount } from './launch.js';
import { resolveInRootfs } from './rootfs-path.js';

const NO_LINKS = 'nosymfollow';

/** Where the rootfs comes from: containerd's mounts (a snapshot), or a directory it prepared. */
export type GuestRoot = { mounts: readonly Mount[] } | { directory: string };

/** Mounts the guest's rootfs at `rootfs`, then `guest`'s binds into it. */
export async function mountGuestFilesystem(rootfs: string, root: GuestRoot, guest: GuestFilesystem): Promise<void> {
  // Every source is checked before anything is mounted.
  const isDirectory = await Promise.all(guest.mounts.map(sourceIsDirectory));
  // Read-only at once when no mount point has to be made in it afterwards.
  const rootWords = [NO_LINKS, ...(guest.readonlyRoot && guest.mounts.length === 0 ? ['ro'] : [])];
  if ('directory' in root) await mountOne({ type: 'bind', source: root.directory, options: ['rbind', ...rootWords] }, rootfs);
  else
    await mountAll(
      root.mounts.map((m) => ({ ...m, options: [...m.options, ...rootWords] })),
      rootfs,
    );
  // In the spec's order, each inside what the earlier ones made: /data, then /data/cache.
  for (const [i, m] of guest.mounts.entries()) await bindInto(rootfs, m, isDirectory[i]!);
  // A recursive bind brings the mounts below its source along, which its own flags do not
  // reach: only then is the mount table read, to find them.
  const recursive = 'directory' in root || guest.mounts.some((m) => m.options.includes('rbind'));
  if (recursive) await addMountFlags(rootfs, [NO_LINKS], { recursive: true });
  if (guest.readonlyRoot && guest.mounts.length > 0) await addMountFlags(rootfs, ['ro']);
}

async function sourceIsDirectory(m: GuestMount): Promise<boolean> {
  const source = await stat(m.source).catch((err: NodeJS.ErrnoException) => {
    const why = err.code === 'ENOENT' ? 'does not exist' : `cannot be read (${err.code})`;
    throw failedPrecondition(`mount at ${m.destination}: its source ${m.source} ${why}`);
  });
  return source.isDirectory();
}

async function bindInto(rootfs: string, m: GuestMount, isDirectory: boolean): Promise<void> {
  const what = `mount at ${m.destination}`;
  const target = await resolveInRootfs(rootfs, m.destination, what, { create: isDirectory ? 'directory' : 'file' });
  try {
    await mountOne({ type: 'bind', source: m.source, options: [...m.options, NO_LINKS] }, target);
  } catch (err) {
    throw failedPrecondition(`${what}: binding ${m.source} [${m.options.join(',')}]: ${(err as Error).message}`);
  }
}
