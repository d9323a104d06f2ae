// Pins a pod's IPC and UTS namespaces without a resident process: util-linux `unshare` creates
// the namespaces, bind-mounts their nsfs files onto files we own, and exits. The bind mounts keep
// the namespaces alive; containers join them by path (OCI linux.namespaces[].path), and removing
// the mounts frees them. The hostname is set inside the new UTS namespace by the one command
// unshare runs in it.
//
// The directory given here belongs to this module: pin creates it, unpin removes it. Its mount
// must not be shared, or every pin would propagate into the peer mount namespaces (unshare(1)
// makes the same demand for mount namespaces); where it is, the directory becomes a private bind
// mount of itself, which unpin undoes.

import { execFile } from 'node:child_process';
import { mkdir, rmdir, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

import { alreadyExists, internal, invalidArgument } from '../core/errors.js';
import { hasErrnoCode } from './libc.js';
import { makePrivateBindOfItself, unmountRecursive } from './mount.js';
import { isMountPoint, isWithin, propagationOf, readMountInfo } from './mountinfo.js';

const run = promisify(execFile);

export interface PinOptions {
  /** Set in the new UTS namespace; needs `uts`. */
  hostname?: string;
  ipc: boolean;
  uts: boolean;
}

export interface PinnedNamespaces {
  ipcPath?: string;
  utsPath?: string;
}

const pinFiles = { ipc: 'ipc', uts: 'uts' } as const;

// RFC 1123 labels, and the kernel's 64-byte limit on a UTS hostname.
const hostnamePattern = /^(?=.{1,64}$)[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$/;

/** The propagation of the mount that `dir` lives on (the deepest mount point above it). */
async function propagationAt(dir: string): Promise<string> {
  const holding = (await readMountInfo())
    .filter((m) => isWithin(dir, m.mountPoint))
    .reduce((deepest, m) => (m.mountPoint.length >= deepest.mountPoint.length ? m : deepest));
  return propagationOf(holding);
}

/** Creates the namespaces asked for and pins them under `dir`. No process remains afterwards. */
export async function pinPodNamespaces(dir: string, options: PinOptions): Promise<PinnedNamespaces> {
  if (options.hostname !== undefined && !options.uts) throw invalidArgument('a pod hostname needs its own UTS namespace');
  if (options.hostname !== undefined && !hostnamePattern.test(options.hostname)) {
    throw invalidArgument(`invalid hostname ${JSON.stringify(options.hostname)}`);
  }
  const pinned: PinnedNamespaces = {};
  if (!options.ipc && !options.uts) return pinned;

  const root = path.resolve(dir);
  await mkdir(root, { recursive: true, mode: 0o700 });
  if ((await propagationAt(root)) !== 'private') await makePrivateBindOfItself(root);

  const args: string[] = [];
  for (const type of ['ipc', 'uts'] as const) {
    if (!options[type]) continue;
    const file = path.join(root, pinFiles[type]);
    if (await isMountPoint(file)) throw alreadyExists(`${type} namespace pinned at ${file}`);
    // unshare bind-mounts onto the file, so it must exist; a leftover from a crash is reused.
    await writeFile(file, '', { mode: 0o444, flag: 'a' });
    args.push(`--${type}=${file}`);
    pinned[type === 'ipc' ? 'ipcPath' : 'utsPath'] = file;
  }
  args.push(...(options.hostname !== undefined ? ['hostname', options.hostname] : ['true']));

  try {
    await run('unshare', args);
  } catch (err) {
    await unpinPodNamespaces(root).catch(() => undefined);
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw internal(`pin namespaces in ${root}: ${stderr || (err as Error).message}`, err);
  }
  return pinned;
}

/** Releases the namespaces pinned under `dir` and removes it. Tolerates a half-pinned or missing dir. */
export async function unpinPodNamespaces(dir: string): Promise<void> {
  const root = path.resolve(dir);
  await unmountRecursive(root);
  for (const name of Object.values(pinFiles)) {
    await unlink(path.join(root, name)).catch((err: unknown) => {
      if (!hasErrnoCode(err, 'ENOENT')) throw err;
    });
  }
  await rmdir(root).catch((err: unknown) => {
    if (!hasErrnoCode(err, 'ENOENT')) throw err;
  });
}
