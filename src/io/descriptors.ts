// A process on this host that inherits its stdio as descriptors, given to the OCI runtime (or
// to a thread of the daemon) that starts it: containerd's FIFOs themselves, so that nothing is
// copied, or the ends of pipes the daemon copies through (pipes.ts). The daemon's copies of them
// are closed once the process holds its own: kept open, an output's reader would never see its
// end, and a stdin pipe would have a second reader.
import { closeSync } from 'node:fs';
import type { StdioEndpoints } from './endpoints.js';

/** A descriptor the process inherits, or nothing (the runtime gives it /dev/null). */
export type StdioTarget = number | 'ignore';

export type StdioSlot = 0 | 1 | 2;

export class InheritedStdio {
  readonly targets: [StdioTarget, StdioTarget, StdioTarget] = ['ignore', 'ignore', 'ignore'];
  /** Descriptors made for the process here; the endpoints close their own. */
  private readonly made: number[] = [];

  /** Hands on the endpoints that are descriptors (FIFOs), as they are. */
  constructor(endpoints: StdioEndpoints) {
    [endpoints.stdin, endpoints.stdout, endpoints.stderr].forEach((endpoint, slot) => {
      if (typeof endpoint === 'number') this.targets[slot] = endpoint;
    });
  }

  /** Gives the process `fd`, made for it (a pipe's end), to be closed by release. */
  give(slot: StdioSlot, fd: number): void {
    this.targets[slot] = fd;
    this.made.push(fd);
  }

  /** Closes the descriptors made here: the process holds its own now. Idempotent. */
  release(): void {
    for (const fd of this.made.splice(0)) closeSync(fd);
  }
}
