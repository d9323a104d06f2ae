// The stdio of a process the agent started (a container's init or an exec), as ReadStdio,
// WriteStdin, CloseStdin and ResizePty reach it (GuestStdio), and its pipes: a pipe for each
// stream the host asked for, /dev/null for the others. The process gets one end of each pipe
// through the runtime; the agent holds the other: it reads stdout and stderr into bounded
// OutputBuffers (ReadStdio) and writes stdin as WriteStdin asks. A process with a terminal has
// process-terminal.ts instead.
import { Socket } from 'node:net';

import { failedPrecondition } from '../../base/errors.js';
import type { WindowSize } from '../../base/model.js';
import { closeFd, pipe } from '../../linux/libc/files.js';
import type { ProcessIo, ProcessStdio, StdioTarget } from '../../oci/runtime.js';
import { OutputBuffer } from './output-buffer.js';

export type OutputStream = 'stdout' | 'stderr';

export interface StdioWanted {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

/** Bytes buffered per output stream before the process is made to wait for the host. */
export const OUTPUT_BUFFER_LIMIT = 1024 * 1024;

/** What the agent holds of one process's stdio: its pipes, or its terminal. */
export interface GuestStdio {
  /** What runc is given: the ends of the pipes the process gets, or a console socket for its terminal. */
  readonly runtimeIo: ProcessIo;
  /** runc has returned (create, exec --detach): the process holds what it was given. */
  started(): void;
  /** What the process wrote to `stream`; undefined when the host did not ask for it. */
  output(stream: OutputStream): OutputBuffer | undefined;
  /** Resolves once every byte is passed on (the process may not have read it yet). */
  writeStdin(data: Uint8Array): Promise<void>;
  /** Ends the process's stdin after what was written before. */
  closeStdin(): void;
  /** Sets the window size of the process's terminal; a process without one has nothing to resize. */
  resize(size: WindowSize): void;
  /** Drops everything: readers waiting on output get what was buffered, then eof. Idempotent. */
  release(): void;
}

export class ProcessStdioPipes implements GuestStdio {
  /** The ends the process gets, in slot order (0, 1, 2); closed here once the runtime has passed them on. */
  readonly runtimeIo: ProcessIo;
  private readonly childEnds: number[] = [];
  private readonly stdin: Socket | undefined;
  private stdinClosed = false;
  private readonly outputs = new Map<OutputStream, { socket: Socket; buffer: OutputBuffer }>();

  constructor(wanted: StdioWanted, outputLimit = OUTPUT_BUFFER_LIMIT) {
    const targets: StdioTarget[] = ['ignore', 'ignore', 'ignore'];
    try {
      if (wanted.stdin) {
        const ends = pipe();
        targets[0] = this.childEnd(ends.read);
        this.stdin = new Socket({ fd: ends.write, readable: false, writable: true });
        // A process that closed its stdin makes writes fail (EPIPE): WriteStdin reports it.
        this.stdin.on('error', () => undefined);
      }
      for (const [slot, name] of [
        [1, 'stdout'],
        [2, 'stderr'],
      ] as const) {
        if (!wanted[name]) continue;
        const ends = pipe();
        targets[slot] = this.childEnd(ends.write);
        this.outputs.set(name, readOutput(ends.read, outputLimit));
      }
    } catch (err) {
      this.release();
      throw err;
    }
    this.runtimeIo = { stdio: targets as ProcessStdio };
  }

  private childEnd(fd: number): number {
    this.childEnds.push(fd);
    return fd;
  }

  /** The runtime has passed the process its ends: ours go, so that its exit (and its children's) is our end-of-file. */
  started(): void {
    this.closeChildEnds();
  }

  private closeChildEnds(): void {
    for (const fd of this.childEnds.splice(0)) closeFd(fd);
  }

  output(stream: OutputStream): OutputBuffer | undefined {
    return this.outputs.get(stream)?.buffer;
  }

  /** Resolves once every byte is in the pipe (the process may not have read it yet). */
  async writeStdin(data: Uint8Array): Promise<void> {
    const stdin = this.openStdin();
    if (data.length === 0) return;
    await new Promise<void>((resolve, reject) => {
      stdin.write(data, (err) => (err ? reject(failedPrecondition(`write stdin: ${err.message}`)) : resolve()));
    });
  }

  /** The process reads end-of-file once it has read what was written. */
  closeStdin(): void {
    const stdin = this.openStdin();
    this.stdinClosed = true;
    stdin.end();
  }

  resize(_size: WindowSize): void {}

  private openStdin(): Socket {
    if (!this.stdin) throw failedPrecondition('the process was created without stdin');
    if (this.stdinClosed) throw failedPrecondition('stdin is closed');
    return this.stdin;
  }

  /** Closes every pipe: readers waiting on output get what was buffered, then eof. */
  release(): void {
    this.closeChildEnds();
    this.stdinClosed = true;
    this.stdin?.destroy();
    for (const { socket, buffer } of this.outputs.values()) {
      socket.destroy();
      buffer.end();
    }
  }
}

function readOutput(fd: number, limit: number): { socket: Socket; buffer: OutputBuffer } {
  const socket = new Socket({ fd, readable: true, writable: false });
  const buffer = new OutputBuffer({ limit, pause: () => socket.pause(), resume: () => socket.resume() });
  socket.on('data', (chunk: Buffer) => buffer.push(chunk));
  socket.on('close', () => buffer.end());
  socket.on('error', () => buffer.end());
  return { socket, buffer };
}
