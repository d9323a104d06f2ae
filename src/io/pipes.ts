// A process on this host whose stdio the daemon copies through pipes: for containerd's streams
// (a process cannot inherit a stream of the Streaming API), and for a stdin FIFO the daemon must
// be able to end at any moment (a thread blocked reading a FIFO cannot be stopped otherwise).
// The process inherits one end of each pipe; the daemon copies through the other.
import { Socket } from 'node:net';
import { pipe } from '../linux/libc/files.js';
import type { InheritedStdio } from './descriptors.js';
import type { StdioEndpoints } from './endpoints.js';
import type { StdioCopies } from './copies.js';

/** Puts a pipe between the process and each endpoint that is a stream, and copies through it. */
export function pipeStreams(endpoints: StdioEndpoints, inherited: InheritedStdio, copies: StdioCopies): void {
  const { stdin } = endpoints;
  if (stdin !== undefined && typeof stdin !== 'number') {
    const ends = pipe();
    inherited.give(0, ends.read);
    const writer = copies.held.hold(new Socket({ fd: ends.write, readable: false, writable: true }), 'stdin pipe');
    // A pipe's end is the process's end-of-file; destroyed, it is that at once.
    copies.copyStdin(stdin, { writable: writer, endsWithSource: true, end: () => writer.end(), abort: () => writer.destroy() });
  }
  for (const slot of [1, 2] as const) {
    const output = slot === 1 ? endpoints.stdout : endpoints.stderr;
    if (output === undefined || typeof output === 'number') continue;
    const ends = pipe();
    inherited.give(slot, ends.write);
    const reader = copies.held.hold(
      new Socket({ fd: ends.read, readable: true, writable: false }),
      slot === 1 ? 'stdout pipe' : 'stderr pipe',
    );
    copies.copyOutput(reader, output);
  }
}
