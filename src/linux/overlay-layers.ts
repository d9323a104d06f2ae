// Which layer file an overlay mount shows at a path: containers of one image each mount an overlay
// of their own (a device of its own, so their files' identities differ), but a file none of them
// changed is the same file of a shared lower layer. Its identity there is what they share.
import { type BigIntStats, lstatSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import type { Mount } from '../base/model.js';

/**
 * The lstat of the lower-layer file that `seen` (the rootfs's own lstat of `relative`, a path
 * inside it with no symbolic link) is, when `rootfs` (Task Create's mounts) is one overlay and
 * the file is in a lower layer, unchanged: looked up in the upper layer, then the lower ones in
 * order, the first found must be the very file seen (inode, size, change time: overlayfs shows a
 * lower file's own when the layers share a file system). Undefined in every other case: the
 * container's own copy (in the upper layer), another kind of rootfs, layers on several file
 * systems, a path a layer cannot be asked about.
 *
 * Synchronous: the rootfs's own lookup of the path (which gave `seen`) had overlayfs look it up in
 * each layer, so these lookups find the kernel's cached entries (microseconds each), where a
 * thread-pool round trip per layer waited milliseconds behind kuasard's other work.
 */
export function lowerLayerFile(rootfs: readonly Mount[], relative: string, seen: BigIntStats): BigIntStats | undefined {
  const layers = overlayLayers(rootfs);
  if (!layers || relative === '' || relative.startsWith('..') || isAbsolute(relative)) return undefined;
  for (const { dir, lower } of layers) {
    let found: BigIntStats | undefined;
    try {
      found = lstatSync(join(dir, relative), { bigint: true, throwIfNoEntry: false });
    } catch {
      return undefined;
    }
    if (!found) continue;
    const same = found.ino === seen.ino && found.size === seen.size && found.ctimeNs === seen.ctimeNs && found.isFile();
    return lower && same ? found : undefined;
  }
  return undefined;
}

/**
 * The layer directories, top first, of a rootfs that is one overlay mount with absolute paths, as
 * containerd's overlayfs snapshotter passes it (a read-only view may have no upper layer).
 */
function overlayLayers(rootfs: readonly Mount[]): { dir: string; lower: boolean }[] | undefined {
  if (rootfs.length !== 1 || rootfs[0]!.type !== 'overlay') return undefined;
  const option = (name: string) => rootfs[0]!.options.find((o) => o.startsWith(`${name}=`))?.slice(name.length + 1);
  const upper = option('upperdir');
  const lowerdir = option('lowerdir');
  // An escaped colon (a path that holds one) is not worth parsing: such a rootfs's files are read.
  if (lowerdir === undefined || lowerdir.includes('\\')) return undefined;
  const layers = [
    ...(upper === undefined ? [] : [{ dir: upper, lower: false }]),
    ...lowerdir.split(':').map((dir) => ({ dir, lower: true })),
  ];
  return layers.every(({ dir }) => isAbsolute(dir)) ? layers : undefined;
}
