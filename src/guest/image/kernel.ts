// The guest kernel: Debian's linux-image-amd64, whichever versioned package it currently depends
// on. The package is downloaded once into a cache directory (apt-get download, no install) and
// unpacked into the build's work directory, where the kernel and its modules are taken from.
import { spawn } from 'node:child_process';
import { open, mkdir, readdir, readFile, stat } from 'node:fs/promises';
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

const XZ_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);

/**
 * The compressed kernel inside a bzImage, located by its boot header (Documentation/arch/x86/boot.rst):
 * the protected-mode part starts after the setup sectors, and payload_offset/payload_length
 * (protocol 2.08+) say where in it the compressed vmlinux lies. Debian compresses with xz.
 */
export function bzImagePayload(bzImage: Buffer): Buffer {
  if (bzImage.length < 0x250 || bzImage.toString('ascii', 0x202, 0x206) !== 'HdrS') throw new Error('the kernel is not a bzImage');
  const setupSectors = bzImage[0x1f1] || 4;
  const start = (setupSectors + 1) * 512 + bzImage.readUInt32LE(0x248);
  const payload = bzImage.subarray(start, start + bzImage.readUInt32LE(0x24c));
  if (!payload.subarray(0, XZ_MAGIC.length).equals(XZ_MAGIC))
    throw new Error('the bzImage payload is not xz-compressed (the only format this builder unpacks)');
  return payload;
}

/**
 * Writes the uncompressed ELF kernel of `bzImagePath` to `out`. QEMU boots it through its PVH
 * entry point, which skips the real-mode setup and the decompression: under TCG the kernel's
 * first line comes about 2.5 s sooner than with the bzImage.
 */
export async function extractElfKernel(bzImagePath: string, out: string): Promise<void> {
  const payload = bzImagePayload(await readFile(bzImagePath));
  const file = await open(out, 'w');
  try {
    // The kernel build appends the uncompressed size after the xz stream: --single-stream ignores it.
    const xz = spawn('xz', ['--decompress', '--stdout', '--single-stream'], { stdio: ['pipe', file.fd, 'pipe'] });
    let stderr = '';
    xz.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
    });
    xz.stdin!.end(payload);
    const code = await new Promise<number | null>((resolve, reject) => {
      xz.on('error', reject);
      xz.on('close', resolve);
    });
    if (code !== 0) throw new Error(`xz could not unpack the kernel of ${basename(bzImagePath)}: ${stderr.trim()}`);
  } finally {
    await file.close();
  }
  const head = Buffer.alloc(ELF_MAGIC.length);
  const check = await open(out, 'r');
  try {
    await check.read(head, 0, head.length, 0);
  } finally {
    await check.close();
  }
  if (!head.equals(ELF_MAGIC)) throw new Error(`the kernel unpacked from ${basename(bzImagePath)} is not an ELF file`);
}
