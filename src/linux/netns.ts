// A network namespace of kuasard's own, pinned by a bind mount onto a file (as `ip netns` pins one
// in /run/netns, but in a directory of ours, so that nothing else lists or reuses it). No process
// stays in it: whoever needs it enters it by that file.
import { execFile } from 'node:child_process';
import { rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { internal } from '../base/errors.js';
import { unmountAll } from './mount.js';

const run = promisify(execFile);

/** A new, empty network namespace (only its loopback, down) pinned at `file`. */
export async function createPinnedNetns(file: string): Promise<void> {
  // unshare binds the namespace onto an existing file.
  await writeFile(file, '', { mode: 0o444, flag: 'a' });
  try {
    await run('unshare', [`--net=${file}`, 'true']);
  } catch (err) {
    await rm(file, { force: true });
    throw internal(`create a network namespace at ${file}: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`, err);
  }
}

/** Unpins the namespace at `file` and removes the file; it ends with its last link and process. Idempotent. */
export async function removePinnedNetns(file: string): Promise<void> {
  await unmountAll(file);
  await rm(file, { force: true });
}
