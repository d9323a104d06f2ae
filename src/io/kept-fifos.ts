// The FIFOs of a process's stdio, held open by the fd keeper while the daemon copies them. When
// the daemon dies, containerd's reader of an output FIFO would see end-of-file (its only writer
// gone) and stop reading it for good, and its writer of stdin would fail (EPIPE): output that the
// process goes on writing could never reach the log again. A copy of each FIFO's end, opened for
// the keeper alone, keeps containerd's side as it was until the next run opens its own ends and
// keeps them under the same names. Released once the process's output has been delivered, so
// that containerd then sees end-of-file as usual.
import { closeSync, constants, openSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Stdio } from '../base/model.js';
import type { KeptDescriptors } from '../linux/fd-keeper.js';
import { openOutputFifo } from './fifo.js';
import { parseStdioEndpoint } from './endpoints.js';

/** Under which name, with which keeper, a process's FIFOs are kept. */
export interface KeptAs {
  keeper: KeptDescriptors;
  /** The process's own name (the slot is appended): the next run keeps its FIFOs under the same one. */
  name: string;
}

export class KeptFifos {
  private constructor(
    private readonly keeper: KeptDescriptors,
    private kept: { name: string; fd: number }[],
  ) {}

  /**
   * Opens and keeps each FIFO of `stdio` (streams are not FIFOs: nothing keeps them). A FIFO that
   * cannot be opened is left out with a warning: the daemon's own open of it has reported it.
   */
  static keep(stdio: Stdio, as: KeptAs, log: Logger): KeptFifos {
    const kept: { name: string; fd: number }[] = [];
    for (const slot of ['stdin', 'stdout', 'stderr'] as const) {
      const endpoint = parseStdioEndpoint(stdio[slot]);
      if (endpoint.kind !== 'fifo') continue;
      const name = `${as.name} ${slot}`;
      let fd: number;
      try {
        // Neither open waits for containerd's end: a reader of stdin (non-blocking), a reader
        // and writer of an output (which never blocks).
        fd = slot === 'stdin' ? openSync(endpoint.path, constants.O_RDONLY | constants.O_NONBLOCK) : openOutputFifo(endpoint.path);
      } catch (err) {
        log.warn({ err, slot }, 'cannot keep a stdio FIFO open across a restart');
        continue;
      }
      as.keeper.keep(name, fd);
      kept.push({ name, fd });
    }
    return new KeptFifos(as.keeper, kept);
  }

  /** The keeper lets go and our copies close. Idempotent. */
  release(): void {
    for (const { name, fd } of this.kept) {
      this.keeper.release(name);
      closeSync(fd);
    }
    this.kept = [];
  }
}
