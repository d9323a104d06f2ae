// Pins a pod's IPC and UTS namespaces without a resident process. IPC and UTS namespaces belong
// to a thread, not to the process: the main thread unshares them, sets the hostname in the new
// UTS namespace, bind-mounts its nsfs files onto files we own, and joins the host's namespaces
// again, all in one run of synchronous system calls, so no other code of ours runs in between
// (libuv's pool threads and Node's other threads keep the host's namespaces throughout). This
// replaced spawning util-linux unshare, whose fork of this large process cost hundreds of
// milliseconds a pod under a burst of pod starts. The bind mounts keep the namespaces alive;
// containers join them by path (OCI linux.namespaces[].path), and removing the mounts frees them.
//
// The directory given here belongs to this module: pin creates it, unpin removes it. Its mount
// must not be shared, or every pin would propagate into the peer mount namespaces (unshare(1)
// makes the same demand for mount namespaces); it becomes a private bind mount of itself, which
// unpin undoes.

import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { rmdir, unlink } from 'node:fs/promises';
import path from 'node:path';

import { alreadyExists, internal, invalidArgument } from '../base/errors.js';
import { hasErrnoCode } from './libc/binding.js';
import { mount, MS } from './libc/mounts.js';
import { CLONE_NEWIPC, CLONE_NEWUTS, sethostname, setns, unshare } from './libc/namespaces.js';
import { makePrivateBindOfItself, unmountRecursive } from './mount.js';
import { isMountPoint, isWithin, propagationOf, readMountInfo } from './mountinfo.js';

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

/** The kernel's limit on a UTS hostname (__NEW_UTS_LEN), in bytes. */
const MAX_HOSTNAME_BYTES = 64;

/**
 * Refuses a hostname the kernel cannot take: over 64 bytes, or with a NUL byte (it would be cut
 * there). Nothing else: containerd's runc path hands any other name to sethostname as it is.
 */
export function checkHostname(hostname: string): void {
  const bytes = Buffer.byteLength(hostname);
  if (bytes > MAX_HOSTNAME_BYTES) {
    throw invalidArgument(`hostname ${JSON.stringify(hostname)} is ${bytes} bytes long: the kernel takes at most ${MAX_HOSTNAME_BYTES}`);
  }
  if (hostname.includes('\0')) throw invalidArgument(`hostname ${JSON.stringify(hostname)} holds a NUL byte`);
}

/**
 * A directory left by an earlier attempt (a crash, a retry): make sure its mount is private and
 * that nothing is pinned there still. Reading the mount table is the costly part of a pin, and a
 * directory made just now needs none of it.
 */
async function checkLeftover(root: string, files: string[]): Promise<void> {
  const table = await readMountInfo();
  const holding = table
    .filter((m) => isWithin(root, m.mountPoint))
    .reduce((deepest, m) => (m.mountPoint.length >= deepest.mountPoint.length ? m : deepest));
  if (propagationOf(holding) !== 'private') await makePrivateBindOfItself(root);
  for (const file of files) {
    if (await isMountPoint(file, table)) throw alreadyExists(`namespace pinned at ${file}`);
  }
}

/**
 * The calling thread moves into new namespaces, pins them onto `files` and returns to the host's.
 * Synchronous from start to end: nothing else may run on this thread while it is away.
 */
function pinFromThisThread(files: { ipc?: string; uts?: string }, hostname: string | undefined): void {
  // thread-self: the namespaces of the calling thread, whichever thread it is.
  const hostIpc = openSync('/proc/thread-self/ns/ipc', 'r');
  const hostUts = openSync('/proc/thread-self/ns/uts', 'r');
  try {
    unshare((files.ipc ? CLONE_NEWIPC : 0) | (files.uts ? CLONE_NEWUTS : 0));
    try {
      if (hostname !== undefined) sethostname(hostname);
      if (files.ipc) mount('/proc/thread-self/ns/ipc', files.ipc, null, MS.BIND, null);
      if (files.uts) mount('/proc/thread-self/ns/uts', files.uts, null, MS.BIND, null);
    } finally {
      returnHome(hostIpc, hostUts);
    }
  } finally {
    closeSync(hostIpc);
    closeSync(hostUts);
  }
}

function returnHome(hostIpc: number, hostUts: number): void {
  try {
    setns(hostIpc, CLONE_NEWIPC);
    setns(hostUts, CLONE_NEWUTS);
  } catch (err) {
    // Never seen (we hold the very namespaces we came from, with the rights unshare needed), but
    // a daemon stuck in a pod's namespaces would hand them to every process it spawns: stop.
    process.stderr.write(`kuasard: cannot return to the host's namespaces: ${(err as Error).message}\n`);
    process.abort();
  }
}

/** Creates the namespaces asked for and pins them under `dir`. No process remains afterwards. */
export async function pinPodNamespaces(dir: string, options: PinOptions): Promise<PinnedNamespaces> {
  if (options.hostname !== undefined && !options.uts) throw invalidArgument('a pod hostname needs its own UTS namespace');
  if (options.hostname !== undefined) checkHostname(options.hostname);
  const pinned: PinnedNamespaces = {};
  if (!options.ipc && !options.uts) return pinned;

  const root = path.resolve(dir);
  const files: { ipc?: string; uts?: string } = {};
  if (options.ipc) files.ipc = pinned.ipcPath = path.join(root, pinFiles.ipc);
  if (options.uts) files.uts = pinned.utsPath = path.join(root, pinFiles.uts);

  // Synchronous file calls on purpose: each takes microseconds, while under a burst of pod starts
  // a turn in libuv's thread pool takes milliseconds.
  const created = mkdirSync(root, { recursive: true, mode: 0o700 }) !== undefined;
  if (!created) await checkLeftover(root, Object.values(files));
  try {
    if (created) {
      mount(root, root, null, MS.BIND | MS.REC, null);
      mount(null, root, null, MS.PRIVATE | MS.REC, null);
    }
    // A bind mount needs an existing file to mount onto; a leftover from a crash is reused.
    for (const file of Object.values(files)) writeFileSync(file, '', { mode: 0o444, flag: 'a' });
    pinFromThisThread(files, options.hostname);
  } catch (err) {
    await unpinPodNamespaces(root).catch(() => undefined);
    throw internal(`pin namespaces in ${root}: ${(err as Error).message}`, err);
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
