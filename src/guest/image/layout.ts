// PROVISIONAL (coordinator's stand-in until the image builder's own layout.ts is merged).
import { access } from 'node:fs/promises';
import { join } from 'node:path';

export const DEFAULT_IMAGE_DIR = '/var/lib/kuasar/vmm-image';
export const IMAGE_FILES = { kernel: 'vmlinuz', initrd: 'initrd.img', rootfs: 'rootfs.img', manifest: 'manifest.json' } as const;

export function imagePaths(dir: string) {
  return {
    kernel: join(dir, IMAGE_FILES.kernel),
    initrd: join(dir, IMAGE_FILES.initrd),
    rootfs: join(dir, IMAGE_FILES.rootfs),
    manifest: join(dir, IMAGE_FILES.manifest),
  };
}

/** The files of the image at `dir` that are missing. */
export async function missingImageFiles(dir: string): Promise<string[]> {
  const missing: string[] = [];
  for (const file of Object.values(imagePaths(dir))) {
    await access(file).catch(() => missing.push(file));
  }
  return missing;
}

export async function readManifest(dir: string): Promise<{ kernelRelease: string }> {
  const { readFile } = await import('node:fs/promises');
  return JSON.parse(await readFile(imagePaths(dir).manifest, 'utf8')) as { kernelRelease: string };
}
