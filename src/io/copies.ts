// What the daemon copies for one process, whichever way its stdio reaches it (pipes, a terminal,
// a channel): its stdin, ended by CloseIO or a kill (stdin-copy.ts), and its outputs, delivered
// in full before its exit is reported (output-copy.ts). Also holds every stream of those copies.
import type { Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';
import { HeldStreams } from './held-streams.js';
import { OutputCopy, type OutputLimits, within } from './output-copy.js';
import { StdinCopy, type StdinTarget } from './stdin-copy.js';

export class StdioCopies {
  readonly held: HeldStreams;
  private stdin: StdinCopy | undefined;
  /** CloseIO or a kill that came before the stdin copy began, to apply once it does. */
  private stdinEnd: 'close' | 'abort' | undefined;
  private readonly outputs: OutputCopy[] = [];

  constructor(log: Logger) {
    this.held = new HeldStreams(log);
  }

  copyStdin(source: Readable, target: StdinTarget): void {
    this.stdin = new StdinCopy(source, target);
    if (this.stdinEnd === 'close') this.stdin.close();
    else if (this.stdinEnd === 'abort') this.stdin.abort();
  }

  /** Copies `source` into `sink`, or discards it when containerd wants none of it. */
  copyOutput(source: Readable, sink: Writable | undefined): void {
    this.outputs.push(new OutputCopy(source, sink));
  }

  closeStdin(): void {
    this.stdinEnd ??= 'close';
    this.stdin?.close();
  }

  abortStdin(): void {
    this.stdinEnd = 'abort';
    this.stdin?.abort();
  }

  /** The process has exited: resolves once everything it wrote is delivered (OutputCopy.deliver), within `limits`. */
  async deliver(limits: OutputLimits): Promise<void> {
    await within(limits.deliverMs, Promise.all(this.outputs.map((output) => output.deliver(limits.readGraceMs))));
  }

  close(): void {
    this.held.destroyAll();
  }
}
