// The guest kernel: Debian's linux-image-amd64, whichever versioned package it currently depends
// on. The package is downloaded once into a cache directory (apt-get download, no install) and
// unpacked into the build's work directory, where the kernel and its modules are taken from.
import { mkdir, readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { runTool } from './tools.js';

/** The meta-package that always names Debian's current amd64 kernel. */
const KERNEL_META_PACKAGE = 'linux-image-amd64';

export const DEFAULT_CACHE_DIR = '/var/cache/kuasar';

export interface KernelPackage {
  /** E.g. `linux-image-6.1.0-57-amd64`. */
  name: string;
  /** E.g. `6.1.192-3`. */
  version: string;
  /** The downloaded .deb in the cache directory. */
  debFile: string;
}

/** The versioned kernel package the meta-package depends on, from `apt-cache depends` output. */
export function parseKernelDependency(aptCacheDepends: string): string {
  const match = /^\s*Depends:\s*(linux-image-\S+)\s*$/m.exec(aptCacheDepends);
  if (!match) throw new Error(`${KERNEL_META_PACKAGE} depends on no linux-image package:\n${aptCacheDepends.trim()}`);
  return match[1]!;
}

/** The file name apt-get download gives a package (an epoch's colon is escaped as %3a). */
export const debFileName = (name: string, version: string): string => `${name}_${version.replace(':', '%3a')}_amd64.deb`;

/** The kernel package apt would install now, downloaded into `cacheDir` unless it is there already. */
export async function fetchKernelPackage(cacheDir: string): Promise<KernelPackage & { downloaded: boolean }> {
  const name = parseKernelDependency(await runTool('apt-cache', ['depends', KERNEL_META_PACKAGE]));
  const version = /^Version:\s*(\S+)/m.exec(await runTool('apt-cache', ['show', '--no-all-versions', name]))?.[1];
  if (!version) throw new Error(`apt-cache show ${name}: no version`);
  const debFile = join(cacheDir, debFileName(name, version));
  const cached = await stat(debFile).then(
    (s) => s.size > 0,
    () => false,
  );
  if (!cached) {
    await mkdir(cacheDir, { recursive: true });
    await runTool('apt-get', ['download', '-q', `${name}=${version}`], { cwd: cacheDir });
    await stat(debFile).catch(() => {
      throw new Error(`apt-get download ${name}=${version} left no ${basename(debFile)} in ${cacheDir}`);
    });
  }
  return { name, version, debFile, downloaded: !cached };
}

export interface UnpackedKernel {
  /** `uname -r` of this kernel. */
  release: string;
  vmlinuz: string;
  /** `/lib/modules/<release>` of the unpacked package. */
  modulesDir: string;
}

/** Unpacks the kernel package into `dir` (a fresh directory) and finds its kernel and modules. */
export async function unpackKernel(debFile: string, dir: string): Promise<UnpackedKernel> {
  await runTool('dpkg-deb', ['-x', debFile, dir]);
  const releases = await readdir(join(dir, 'lib/modules'));
  if (releases.length !== 1) throw new Error(`${basename(debFile)}: expected one module tree, found ${releases.join(', ') || 'none'}`);
  const release = releases[0]!;
  return { release, vmlinuz: join(dir, 'boot', `vmlinuz-${release}`), modulesDir: join(dir, 'lib/modules', release) };
}
