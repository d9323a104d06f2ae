// Files written whole: a crash at any moment leaves either the old or the new content, never a
// torn file, because we write a temporary file, fsync it, and rename it over the old one.
// Without the fsync (the engine's records) the promise holds for a crash of the writing process,
// not of the machine: its written pages outlive it, and the rename makes them the file at once.
// Reading a record back is record-schema.ts's job: what it holds is checked before it is believed.
import { closeSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';

let writes = 0;

/** Who owns a file written whole, and with which permission bits. */
export interface FileOwnership {
  mode: number;
  /** Kept as the process's own when not given. */
  owner?: { uid: number; gid: number };
}

/**
 * Writes `text` to `path` whole or not at all: a temporary file in the same directory, synced,
 * given its mode and owner, then renamed over the old file.
 */
export async function writeFileAtomic(path: string, text: string, ownership: FileOwnership): Promise<void> {
  const tmp = temporaryName(path);
  const file = await open(tmp, 'w', ownership.mode);
  try {
    await file.writeFile(text);
    // open's mode passes through the umask; the file must have exactly the one asked for.
    await file.chmod(ownership.mode);
    if (ownership.owner) await file.chown(ownership.owner.uid, ownership.owner.gid);
    await file.sync();
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

/**
 * `value` as JSON in `path` (mode 0600), whole or not at all as writeFileAtomic writes, but not
 * synced, and synchronously: the engine's records are files of a few KiB in kuasard's state
 * directory (by default a tmpfs), which four system calls of microseconds write, where writeFileAtomic's
 * five thread-pool round trips each waited behind the pool's other work (milliseconds per Task
 * API call under load). No chmod: open's mode passes through the umask, which can only take bits
 * away from 0600, and the record's reader is root.
 */
export function writeJsonAtomicSync(path: string, value: unknown): void {
  const tmp = temporaryName(path);
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeFileSync(fd, JSON.stringify(value, null, 1));
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/** A name of its own per write, in the file's directory, so that two writers never share one. */
function temporaryName(path: string): string {
  return `${path}.tmp-${process.pid}-${++writes}`;
}
