// The pods kuasard holds on this node, read from its state directory: one directory per sandbox
// under <state_dir>/<kind>/, the same rule kuasard's Sandboxer recovers them by at start. Reading
// the directory rather than asking the daemon answers also while kuasard is stopped, when its
// pods still run (the unit's KillMode=process) and would be found by its next start.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { isValidId } from '../base/ids.js';
import { KIND_NAMES } from '../kinds/index.js';

export interface HeldPod {
  kind: string;
  id: string;
}

/** Every sandbox directory under `stateDir`, of every registered kind (enabled now or not). */
export function podsInStateDir(stateDir: string): HeldPod[] {
  return KIND_NAMES.flatMap((kind) => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(join(stateDir, kind), { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    return entries.filter((entry) => entry.isDirectory() && isValidId(entry.name)).map((entry) => ({ kind, id: entry.name }));
  });
}
