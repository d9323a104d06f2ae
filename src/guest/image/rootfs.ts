// The root image (rootfs.img): node and the agent bundle, koffi, runc and busybox with the
// libraries they load, and a minimal /etc, staged in a directory and packed by mksquashfs.
// squashfs because the image is read-only anyway: it is a third of ext4's size, needs one
// module (ext4 needs four) and mksquashfs is reproducible given fixed times and owners.
import { chmod, copyFile, mkdir, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { AGENT_INIT } from './init-script.js';
import { sharedLibraries } from './shared-libs.js';
import { runTool } from './tools.js';

export interface RootfsInputs {
  node: string;
  runc: string;
  /** A statically linked busybox. */
  busybox: string;
  /** kuasar-idle (static): the agent starts it to hold a pod's shared PID namespace. */
  pidHolder: string;
  /** The agent bundle's bytes. */
  agentBundle: Buffer;
  /** The koffi package directory (its node_modules/koffi). */
  koffiDir: string;
}

/** Files the agent writes at run time under /run (a tmpfs); the image links to them. */
export const RUNTIME_ETC_FILES = ['hosts', 'resolv.conf', 'hostname'] as const;
export const RUNTIME_ETC_DIR = '/run/kuasar/etc';

/** Empty directories: mount points the agent fills, and homes. */
const EMPTY_DIRS = ['proc', 'sys', 'dev', 'run', 'tmp', 'root', 'var', 'mnt'];

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n';
const GROUP = 'root:x:0:\nnogroup:x:65534:\n';

/** Copies `from` (following symlinks) to `root`/`to` with the source's permission bits. */
async function copyInto(root: string, from: string, to: string): Promise<void> {
  const target = join(root, to);
  await mkdir(dirname(target), { recursive: true });
  await copyFile(from, target);
  await chmod(target, (await stat(from)).mode & 0o777);
}

/** Writes `data` to `root`/`path` with exactly `mode` (not what the umask leaves of it). */
async function writeInto(root: string, path: string, data: string | Buffer, mode: number): Promise<void> {
  const target = join(root, path);
  await writeFile(target, data);
  await chmod(target, mode);
}

/** Gives every directory below `root` mode 0755 (/tmp 1777), whatever the umask made of them. */
async function fixDirectoryModes(root: string): Promise<void> {
  await chmod(root, 0o755);
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const path = join(entry.parentPath, entry.name);
    await chmod(path, path === join(root, 'tmp') ? 0o1777 : 0o755);
  }
}

/** koffi's JavaScript (not its C++ sources and docs) and the prebuilt linux x64 binary package it loads. */
async function koffiFiles(koffiDir: string): Promise<{ from: string; to: string }[]> {
  const files: { from: string; to: string }[] = [];
  const skipDirs = new Set(['doc', 'vendor', 'lib']);
  for (const entry of await readdir(koffiDir, { recursive: true, withFileTypes: true })) {
    const rel = relative(koffiDir, join(entry.parentPath, entry.name));
    if (!entry.isFile() || skipDirs.has(rel.split('/')[0]!)) continue;
    if (/\.(js|cjs|json)$|^LICENSE/.test(entry.name)) files.push({ from: join(koffiDir, rel), to: join('koffi', rel) });
  }
  // koffi's loader requires @koromix/koffi-<platform>-<arch>, a sibling package in node_modules.
  const binaryPackageMain = createRequire(join(koffiDir, 'package.json')).resolve('@koromix/koffi-linux-x64');
  const binaryDir = dirname(binaryPackageMain);
  for (const name of ['package.json', 'index.js', 'linux_x64/koffi.node']) {
    files.push({ from: join(binaryDir, name), to: join('@koromix/koffi-linux-x64', name) });
  }
  return files;
}

/** Lays out the root filesystem in the empty directory `root`. */
export async function stageRootfs(inputs: RootfsInputs, root: string): Promise<void> {
  for (const dir of [...EMPTY_DIRS, 'etc', 'bin', 'usr/bin', 'usr/sbin', 'usr/lib/kuasar'])
    await mkdir(join(root, dir), { recursive: true });

  await copyInto(root, inputs.node, 'usr/bin/node');
  await copyInto(root, inputs.runc, 'usr/sbin/runc');
  const libraries = new Set([...(await sharedLibraries(inputs.node)), ...(await sharedLibraries(inputs.runc))]);
  for (const lib of [...libraries].sort()) await copyInto(root, lib, lib);

  await copyInto(root, inputs.busybox, 'bin/busybox');
  const applets = (await runTool(inputs.busybox, ['--list'])).split('\n').filter((name) => name !== '' && name !== 'busybox');
  for (const applet of applets.sort()) await symlink('busybox', join(root, 'bin', applet));

  // Where the agent looks for it (guest/agent/options.ts, DEFAULT_PID_HOLDER).
  await copyInto(root, inputs.pidHolder, 'usr/lib/kuasar/kuasar-idle');

  const agentPath = AGENT_INIT[1];
  await writeInto(root, agentPath, inputs.agentBundle, 0o644);
  const nodeModules = join(root, dirname(agentPath), 'node_modules');
  for (const file of await koffiFiles(inputs.koffiDir)) await copyInto(nodeModules, file.from, file.to);

  await writeInto(root, 'etc/passwd', PASSWD, 0o644);
  await writeInto(root, 'etc/group', GROUP, 0o644);
  for (const name of RUNTIME_ETC_FILES) await symlink(`${RUNTIME_ETC_DIR}/${name}`, join(root, 'etc', name));
  await fixDirectoryModes(root);
}

/** Packs `root` into a squashfs image at `out`, every file owned by root and dated `mtime`. */
export async function packRootfs(root: string, out: string, mtime: number): Promise<void> {
  // mksquashfs refuses SOURCE_DATE_EPOCH together with its own time options.
  const { SOURCE_DATE_EPOCH: _, ...env } = process.env;
  const time = String(mtime);
  await runTool(
    'mksquashfs',
    [root, out, '-noappend', '-comp', 'zstd', '-all-root', '-no-xattrs', '-mkfs-time', time, '-all-time', time, '-quiet', '-no-progress'],
    { env },
  );
}
