// Atomic JSON state files: a crash at any moment leaves either the old or the new content,
// never a torn file, because we write a temporary file, fsync it, and rename it over the old one.
// Without the fsync (`durable: false`) the promise holds for a crash of the writing process, not
// of the machine: its written pages outlive it, and the rename makes them the file at once.
// Reading one back is record-schema.ts's job: what it holds is checked before it is believed.
import { open, rename, rm } from 'node:fs/promises';

let writes = 0;

/** Who owns a file written whole, and with which permission bits. */
export interface FileOwnership {
  mode: number;
  /** Kept as the process's own when not given. */
  owner?: { uid: number; gid: number };
  /** Synced before the rename, to survive a crash of the machine (default true). */
  durable?: boolean;
}

/**
 * Writes `text` to `path` whole or not at all: a temporary file in the same directory (a name of
 * its own per write, so that two writers never share one), synced, given its mode and owner, then
 * renamed over the old file.
 */
export async function writeFileAtomic(path: string, text: string, ownership: FileOwnership): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${++writes}`;
  const file = await open(tmp, 'w', ownership.mode);
  try {
    await file.writeFile(text);
    // open's mode passes through the umask; the file must have exactly the one asked for.
    await file.chmod(ownership.mode);
    if (ownership.owner) await file.chown(ownership.owner.uid, ownership.owner.gid);
    if (ownership.durable !== false) await file.sync();
  } finally {
    await file.close();
  }
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

export async function writeJsonAtomic(path: string, value: unknown, options: { durable?: boolean } = {}): Promise<void> {
  await writeFileAtomic(path, JSON.stringify(value, null, 1), { mode: 0o600, ...options });
}
