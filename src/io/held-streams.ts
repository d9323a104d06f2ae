// The streams the daemon holds for one process's stdio. A stream that fails (its reader gone,
// EPIPE, a terminal's EIO) only ends its own copy: the failure is logged and goes no further,
// since the process's exit, not its stdio, decides how it ends.
import type { Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';

export class HeldStreams {
  private readonly streams: (Readable | Writable)[] = [];

  constructor(private readonly log: Logger) {}

  /** Keeps `stream` until destroyAll; `what` names it in the log. */
  hold<S extends Readable | Writable>(stream: S, what: string): S {
    this.streams.push(stream);
    stream.on('error', (err: NodeJS.ErrnoException) => this.log.debug({ err: err.message, stream: what }, 'process stdio stream failed'));
    return stream;
  }

  destroyAll(): void {
    for (const stream of this.streams.splice(0)) stream.destroy();
  }
}
