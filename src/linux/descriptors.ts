// The daemon's own open file descriptors, as /proc/self/fd lists them.
import { closeSync, readdirSync, readlinkSync } from 'node:fs';

/**
 * Closes every descriptor of this process open on a file at or below `dir`, and returns how
 * many it closed. For descriptors opened on the daemon's behalf by code that never closes them
 * itself (node:wasi keeps an instance's preopened directories and the files the module left
 * open until the process ends): left open, they would keep the container's mounts busy.
 * Only for directories nothing else of the daemon opens files in.
 */
export function closeDescriptorsUnder(dir: string): number {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  let closed = 0;
  for (const name of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${name}`);
    } catch {
      continue; // closed since the listing (readdir's own descriptor among them)
    }
    if (target !== dir && !target.startsWith(prefix)) continue;
    try {
      closeSync(Number(name));
      closed += 1;
    } catch {
      // closed by its owner in the meantime
    }
  }
  return closed;
}
