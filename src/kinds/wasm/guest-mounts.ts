// The guest's file system on the host: the container's rootfs (a mount of its own) with every
// bind mount of the spec bound at its destination inside it, so that preopening the rootfs as
// `/` is all a module gets, nested mounts included. Everything made here lies below the rootfs
// mount, so unmounting the rootfs recursively (the container's Delete, which core also runs
// after a failed Create) takes it all away.
import { stat } from 'node:fs/promises';
import { failedPrecondition } from '../../core/errors.js';
import { addMountFlags, mountOne } from '../../linux/mount.js';
import type { GuestFilesystem, GuestMount } from './launch.js';
import { resolveInRootfs } from './rootfs-path.js';

/** Mounts `guest` into `rootfs`, which must be a mount point of the container's own. */
export async function mountGuestFilesystem(rootfs: string, guest: GuestFilesystem): Promise<void> {
  // In the spec's order, each inside what the earlier ones made: /data, then /data/cache.
  for (const m of guest.mounts) await bindInto(rootfs, m);
  // Node's WASI looks up the last part of a path inside its preopen itself, but hands the parts
  // before it to the kernel: a link such as `escape -> /` in the image or a volume would lead
  // the module out to the host's own files. With nosymfollow the kernel follows no link on these
  // mounts (ELOOP to the module); the daemon's lookups read links without following them.
  await addMountFlags(rootfs, ['nosymfollow'], { recursive: true });
  // After the mount points are made in it. Only `/` itself: its mounts keep their own mode.
  if (guest.readonlyRoot) await addMountFlags(rootfs, ['ro']);
}

async function bindInto(rootfs: string, m: GuestMount): Promise<void> {
  const what = `mount at ${m.destination}`;
  const source = await stat(m.source).catch((err: NodeJS.ErrnoException) => {
    const why = err.code === 'ENOENT' ? 'does not exist' : `cannot be read (${err.code})`;
    throw failedPrecondition(`${what}: its source ${m.source} ${why}`);
  });
  const target = await resolveInRootfs(rootfs, m.destination, what, { create: source.isDirectory() ? 'directory' : 'file' });
  try {
    await mountOne({ type: 'bind', source: m.source, options: m.options }, target);
  } catch (err) {
    throw failedPrecondition(`${what}: binding ${m.source} [${m.options.join(',')}]: ${(err as Error).message}`);
  }
}
