// Opening the stdio FIFOs that containerd made for a container, so that the container's init
// process inherits them directly: no copy loop in the daemon for FIFO-mode containers.
import { closeSync, constants, openSync } from 'node:fs';
import type { Stdio } from '../core/model.js';

export interface ContainerStdio {
  /** stdin, stdout, stderr as fds for the OCI runtime's child, or 'ignore' for /dev/null. */
  fds: [number | 'ignore', number | 'ignore', number | 'ignore'];
  /** Close the daemon's copies once the container holds its own. */
  close(): void;
}

/**
 * Outputs are opened read-write: opening a FIFO that way never blocks and never fails for want
 * of a reader, and containerd's reader is already there. The daemon closes its copy right after
 * create, so the reader sees end-of-file when the container's last writer exits.
 */
export function openContainerStdio(stdio: Stdio): ContainerStdio {
  const opened: number[] = [];
  const open = (path: string, flags: number): number | 'ignore' => {
    if (!path) return 'ignore';
    const fd = openSync(path, flags);
    opened.push(fd);
    return fd;
  };
  try {
    const fds: ContainerStdio['fds'] = [
      // stdin read-write too for now: the container never sees EOF on it (see README, limits).
      open(stdio.stdin, constants.O_RDWR),
      open(stdio.stdout, constants.O_RDWR),
      open(stdio.stderr, constants.O_RDWR),
    ];
    return { fds, close: () => opened.forEach((fd) => closeSync(fd)) };
  } catch (err) {
    opened.forEach((fd) => closeSync(fd));
    throw err;
  }
}
