// Open file descriptors of a process, as /proc/<pid>/fd lists them.
import { closeSync, readdirSync, readlinkSync } from 'node:fs';

export interface OpenDescriptor {
  fd: number;
  /** What it is open on: a path, or `pipe:[…]`, `socket:[…]`, `anon_inode:…`. */
  target: string;
}

/** The descriptors of `pid` (this process by default) open on a file at or below `dir`. */
export function descriptorsUnder(dir: string, pid: number | 'self' = 'self'): OpenDescriptor[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return readdirSync(`/proc/${pid}/fd`).flatMap((name) => {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${name}`);
      return target === dir || target.startsWith(prefix) ? [{ fd: Number(name), target }] : [];
    } catch {
      return []; // closed since the listing (readdir's own descriptor among them)
    }
  });
}

/**
 * Closes every descriptor of this process open on a file at or below `dir`, and returns how
 * many it closed. For descriptors opened on the daemon's behalf by code that can no longer close
 * them (node:wasi's, for an instance whose worker thread ended): left open, they would keep the
 * container's mounts busy. Only for directories nothing else of the daemon opens files in. It
 * reads the target of every descriptor the process holds: not for a path taken at every end.
 */
export function closeDescriptorsUnder(dir: string): number {
  let closed = 0;
  for (const { fd } of descriptorsUnder(dir)) {
    try {
      closeSync(fd);
      closed += 1;
    } catch {
      // closed by its owner in the meantime
    }
  }
  return closed;
}
