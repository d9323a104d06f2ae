// Atomic JSON state files: a crash at any moment leaves either the old or the new content,
// never a torn file, because we write a temporary file, fsync it, and rename it over the old one.
// Reading one back is record-schema.ts's job: what it holds is checked before it is believed.
import { open, rename, rm } from 'node:fs/promises';

let writes = 0;

export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  // A name of its own per write, so that two writers never share a temporary file.
  const tmp = `${path}.tmp-${process.pid}-${++writes}`;
  const file = await open(tmp, 'w', 0o600);
  try {
    await file.writeFile(JSON.stringify(value, null, 1));
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
