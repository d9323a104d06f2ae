// The guest image directory of the vmm kind: its file names, where it lives by default and what
// its manifest says. The host kind (src/kinds/vmm) reads images through this module alone, so it
// stays tiny and imports nothing of ours; `kuasar image build` (src/guest/image/build.ts) writes them.
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Where `kuasar image build` puts the image and the vmm kind looks for it unless told otherwise;
 * KUASAR_IMAGE_DIR moves that default (a development tree testing its own agent beside another).
 */
export const DEFAULT_IMAGE_DIR = process.env.KUASAR_IMAGE_DIR || '/var/lib/kuasar/vmm-image';

/** The files of an image directory, by role. */
export const IMAGE_FILES = {
  /**
   * The guest kernel (Debian's linux-image-amd64) as an uncompressed ELF file, for `-kernel`:
   * QEMU boots it through its PVH entry point, seconds sooner under TCG than the bzImage.
   */
  kernel: 'vmlinux',
  /** The initramfs (busybox and the virtio modules), for `-initrd`. */
  initrd: 'initrd.img',
  /** The read-only root filesystem (squashfs), attached as a read-only virtio-blk disk. */
  rootfs: 'rootfs.img',
  /** What was built from what: a {@link ImageManifest}. */
  manifest: 'manifest.json',
} as const;

export type ImageFileRole = keyof typeof IMAGE_FILES;

/** The command that (re)builds an image directory, for messages that say how to fix one. */
export const BUILD_COMMAND = 'kuasar image build';

/** The guest device the initramfs mounts the root image from: the first virtio-blk disk. */
export const ROOT_DEVICE = '/dev/vda';

export interface ImageFileRecord {
  size: number;
  sha256: string;
}

export interface ImageManifest {
  /** The guest kernel's release (`uname -r` in the guest), e.g. `6.1.0-57-amd64`. */
  kernelRelease: string;
  /** The Debian package the kernel and its modules came from, e.g. `linux-image-6.1.0-57-amd64_6.1.192-3`. */
  kernelPackage: string;
  /** The root image's filesystem type, as `mount -t` names it. */
  rootfsType: 'squashfs';
  /** Each image file (manifest.json itself excluded) by name. */
  files: Record<string, ImageFileRecord>;
  /** A hash over everything the image was built from; an equal key means an up-to-date image. */
  inputsKey: string;
  /** ISO 8601, when this image was built (not part of any file's bytes). */
  builtAt: string;
  builderVersion: string;
}

/** The full path of each image file of `dir`. */
export function imagePaths(dir: string): Record<ImageFileRole, string> {
  return {
    kernel: join(dir, IMAGE_FILES.kernel),
    initrd: join(dir, IMAGE_FILES.initrd),
    rootfs: join(dir, IMAGE_FILES.rootfs),
    manifest: join(dir, IMAGE_FILES.manifest),
  };
}

export interface ImageCheck {
  complete: boolean;
  /** The file names that are not there (empty when complete). */
  missing: string[];
  /** What to run to make the directory complete, when it is not. */
  fix?: string;
}

/** Whether `dir` holds every file of an image; what is missing and the command that builds it if not. */
export async function checkImageDir(dir: string): Promise<ImageCheck> {
  const missing: string[] = [];
  for (const name of Object.values(IMAGE_FILES)) {
    try {
      await access(join(dir, name));
    } catch {
      missing.push(name);
    }
  }
  if (missing.length === 0) return { complete: true, missing };
  const fix = dir === DEFAULT_IMAGE_DIR ? BUILD_COMMAND : `${BUILD_COMMAND} --out ${dir}`;
  return { complete: false, missing, fix };
}

/** The manifest of the image at `dir`. */
export async function readManifest(dir: string): Promise<ImageManifest> {
  return JSON.parse(await readFile(imagePaths(dir).manifest, 'utf8')) as ImageManifest;
}
