// The stdio of one container process (an init or an exec), whichever way containerd asked for it:
//
// - FIFO paths, no terminal: the process gets the FIFOs themselves, nothing is copied.
// - streams (io_type "streaming"), no terminal: the process gets pipes, and the daemon copies
//   between them and the streams containerd opened to the sandbox.
// - a terminal: the OCI runtime makes a pty in the container and sends its master over a
//   console socket; the daemon copies stdin (FIFO or stream) into the master and the master's
//   output into stdout (FIFO or stream). A terminal has no separate stderr.
//
// Lifecycle: `open` before the runtime runs (its `runtime` part is what the runtime is given),
// `started` once the runtime has returned, `finish` when the process has exited (everything it
// wrote is delivered, within bounds: output-copy.ts), `close` to drop everything at once (a
// failed start, a delete).
import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { Readable, type Writable } from 'node:stream';
import type { Logger } from 'pino';
import { failedPrecondition, invalidArgument } from '../base/errors.js';
import type { WindowSize } from '../base/model.js';
import type { Stdio } from '../base/model.js';
import type { ProcessStream } from '../base/streams.js';
import { pipe } from '../linux/libc/files.js';
import { ConsoleSocket } from './console-socket.js';
import { fifoReader, fifoStdinReader, fifoWriter, openOutputFifo, openStdinFifo } from './fifo.js';
import { DEFAULT_OUTPUT_LIMITS, OutputCopy, within, type OutputLimits } from './output-copy.js';
import { PtyMaster } from './pty-master.js';

/** Where one stdio stream of a process goes, as containerd's Task API names it. */
export type StdioEndpoint = { kind: 'none' } | { kind: 'fifo'; path: string } | { kind: 'stream'; id: string };

/** A stdio string: "" (none), an absolute FIFO path, or `<sandbox address>?streaming_id=<id>`. */
export function parseStdioEndpoint(value: string): StdioEndpoint {
  if (value === '') return { kind: 'none' };
  if (!value.includes('://')) {
    if (!value.startsWith('/')) throw invalidArgument(`stdio ${JSON.stringify(value)}: a FIFO path must be absolute`);
    return { kind: 'fifo', path: value };
  }
  let id: string | null = null;
  try {
    id = new URL(value).searchParams.get('streaming_id');
  } catch {
    // reported below like any other URL this daemon cannot serve
  }
  if (!id) throw invalidArgument(`stdio ${JSON.stringify(value)}: only FIFO paths and streaming URLs (?streaming_id=) are supported`);
  return { kind: 'stream', id };
}

/** Where streams that containerd opened for the sandbox are taken from (core's StreamRegistry). */
export interface StreamSource {
  take(id: string, timeoutMs: number): Promise<ProcessStream>;
}

export interface ProcessStdioOptions {
  stdio: Stdio;
  streams: StreamSource;
  /** A private directory with a short path, for console sockets. */
  consoleDir: string;
  log: Logger;
  /** How long to wait for a stream containerd has not opened yet (default 10 s). */
  streamTimeoutMs?: number;
  /**
   * Read a stdin FIFO in the daemon and give the process a pipe instead, as for a stream, so
   * that the daemon can end the process's stdin at any moment (abortStdin). For processes that
   * are threads of the daemon: a thread blocked reading a FIFO cannot be stopped otherwise.
   */
  copyStdin?: boolean;
}

type Target = number | 'ignore';

/** What the OCI runtime is given: the process's stdio descriptors, or a console socket. */
export interface RuntimeStdio {
  stdio: [Target, Target, Target];
  consoleSocket?: string;
}

/** End of Transmission: a terminal's end-of-file character (VEOF) by default. */
const EOT = Buffer.from([0x04]);
const DEFAULT_STREAM_TIMEOUT_MS = 10_000;
/** How long CloseIO waits for stdin data still in flight before it ends the stream. */
const STDIN_CLOSE_GRACE_MS = 2_000;

export class ProcessStdio {
  readonly runtime: RuntimeStdio = { stdio: ['ignore', 'ignore', 'ignore'] };
  /** Descriptors the process inherits; ours are closed once the runtime has handed them on. */
  private readonly childEnds: number[] = [];
  /** Every stream the daemon holds for the process, destroyed by close(). */
  private readonly held: (Readable | Writable)[] = [];
  /** The daemon's copies of the process's output (pipes to streams, or the terminal). */
  private readonly outputs: OutputCopy[] = [];
  private consoleSocket: ConsoleSocket | undefined;
  private terminal: PtyMaster | undefined;
  /** Where the daemon reads the process's stdin from, and (without a terminal) writes it to. */
  private stdinSource: Readable | undefined;
  private stdinPipe: Writable | undefined;
  /** The terminal's output goes here (a FIFO or a stream); set with a terminal only. */
  private terminalOutput: Writable | undefined;
  private closed = false;

  private constructor(private readonly log: Logger) {}

  static async open(options: ProcessStdioOptions): Promise<ProcessStdio> {
    const { stdio } = options;
    const endpoints = [stdio.stdin, stdio.stdout, stdio.stderr].map(parseStdioEndpoint) as [StdioEndpoint, StdioEndpoint, StdioEndpoint];
    const io = new ProcessStdio(options.log);
    try {
      const streams = await io.takeStreams(endpoints, options.streams, options.streamTimeoutMs ?? DEFAULT_STREAM_TIMEOUT_MS);
      if (stdio.terminal) io.prepareTerminal(endpoints, streams, options.consoleDir);
      else io.preparePipes(endpoints, streams, options.copyStdin ?? false);
      return io;
    } catch (err) {
      io.close();
      throw err;
    }
  }

  /** The runtime has returned: the process holds its own descriptors; copying begins. */
  started(): void {
    this.closeChildEnds();
    if (!this.consoleSocket) return;
    const master = this.consoleSocket.receiveMaster();
    this.consoleSocket.close();
    this.consoleSocket = undefined;
    const terminal = new PtyMaster(master);
    this.terminal = terminal;
    this.hold(terminal.input, 'terminal');
    // Its output ends once every holder of the pty's other side is gone and all they wrote is read.
    this.outputs.push(new OutputCopy(terminal.output, this.terminalOutput));
    this.stdinSource?.pipe(terminal.input, { end: false });
  }

  /** Resizes the terminal; a process without one has nothing to resize (as runc's shim). */
  resize(size: WindowSize): void {
    this.terminal?.resize(size);
  }

  /**
   * Ends the process's stdin where the daemon holds it. Through a pipe, the process reads
   * end-of-file; on a terminal, which has no end of its own, it gets the end-of-file character.
   * A process that reads a FIFO itself sees end-of-file when containerd closes its writer.
   */
  closeStdin(): void {
    const source = this.stdinSource;
    if (!source) return;
    this.stdinSource = undefined;
    let done = false;
    const end = () => {
      if (done) return;
      done = true;
      clearTimeout(grace);
      source.unpipe();
      source.destroy();
      if (this.stdinPipe) this.stdinPipe.end();
      else if (this.terminal && !this.terminal.input.destroyed) this.terminal.input.write(EOT);
    };
    // CloseIO travels on another connection than the stdin stream and can overtake its last
    // Data: let what containerd sent arrive and drain first, for a moment at most.
    const grace = setTimeout(end, STDIN_CLOSE_GRACE_MS);
    if (source.readableEnded) end();
    else source.once('end', end);
  }

  /** Ends the process's stdin now, data in flight included (the process is being killed). */
  abortStdin(): void {
    this.stdinSource?.unpipe();
    this.stdinSource?.destroy();
    this.stdinSource = undefined;
    this.stdinPipe?.destroy();
  }

  /**
   * The process has exited: delivers everything it wrote (see OutputCopy.deliver), for at most
   * `limits.deliverMs`, then releases everything.
   */
  async finish(limits: OutputLimits = DEFAULT_OUTPUT_LIMITS): Promise<void> {
    await within(limits.deliverMs, Promise.all(this.outputs.map((output) => output.deliver(limits.readGraceMs))));
    this.close();
  }

  /** Releases everything now. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closeChildEnds();
    this.consoleSocket?.close();
    for (const stream of this.held) stream.destroy();
    this.terminal?.close();
  }

  private async takeStreams(endpoints: StdioEndpoint[], source: StreamSource, timeoutMs: number): Promise<(ProcessStream | undefined)[]> {
    const taken = await Promise.all(
      endpoints.map(async (endpoint) => {
        if (endpoint.kind !== 'stream') return undefined;
        const stream = await source.take(endpoint.id, timeoutMs);
        this.hold(stream, endpoint.id);
        return stream;
      }),
    );
    const [stdin, stdout, stderr] = taken;
    if (stdin && !(stdin instanceof Readable)) throw failedPrecondition('the stdin stream cannot be read');
    for (const output of [stdout, stderr]) {
      if (output && !isWritable(output)) throw failedPrecondition('an output stream cannot be written');
    }
    return taken;
  }

  private preparePipes(endpoints: StdioEndpoint[], streams: (ProcessStream | undefined)[], copyStdin: boolean): void {
    endpoints.forEach((endpoint, slot) => {
      if (endpoint.kind === 'fifo' && slot === 0 && copyStdin) {
        this.pipeStdin(this.hold(fifoStdinReader(endpoint.path), 'stdin fifo'));
        return;
      }
      if (endpoint.kind === 'fifo') {
        this.runtime.stdio[slot] = this.childEnd(slot === 0 ? openStdinFifo(endpoint.path) : openOutputFifo(endpoint.path));
        return;
      }
      const stream = streams[slot];
      if (!stream) return;
      if (slot === 0) {
        this.pipeStdin(stream as Readable);
      } else {
        const ends = pipe();
        this.runtime.stdio[slot] = this.childEnd(ends.write);
        const reader = this.hold(
          new Socket({ fd: ends.read, readable: true, writable: false }),
          slot === 1 ? 'stdout pipe' : 'stderr pipe',
        );
        this.outputs.push(new OutputCopy(reader, stream as Writable));
      }
    });
  }

  /** The process reads a pipe; the daemon copies `source` into it (end-of-file when `source` ends). */
  private pipeStdin(source: Readable): void {
    const ends = pipe();
    this.runtime.stdio[0] = this.childEnd(ends.read);
    const writer = this.hold(new Socket({ fd: ends.write, readable: false, writable: true }), 'stdin pipe');
    this.stdinSource = source;
    this.stdinPipe = writer;
    source.pipe(writer);
  }

  private prepareTerminal(endpoints: StdioEndpoint[], streams: (ProcessStream | undefined)[], consoleDir: string): void {
    const [stdin, stdout] = endpoints;
    if (stdin.kind === 'fifo') this.stdinSource = this.hold(fifoReader(stdin.path), 'stdin fifo');
    else if (streams[0]) this.stdinSource = streams[0] as Readable;
    if (stdout.kind === 'fifo') this.terminalOutput = this.hold(fifoWriter(stdout.path), 'stdout fifo');
    else if (streams[1]) this.terminalOutput = streams[1] as Writable;
    this.consoleSocket = ConsoleSocket.open(consoleDir);
    this.runtime.consoleSocket = this.consoleSocket.path;
  }

  private childEnd(fd: number): number {
    this.childEnds.push(fd);
    return fd;
  }

  private closeChildEnds(): void {
    for (const fd of this.childEnds.splice(0)) closeSync(fd);
  }

  /** Keeps `stream` for close(); its errors (a reader gone, EPIPE) end its copy, nothing more. */
  private hold<S extends Readable | Writable>(stream: S, what: string): S {
    this.held.push(stream);
    stream.on('error', (err: NodeJS.ErrnoException) => this.log.debug({ err: err.message, stream: what }, 'process stdio stream failed'));
    return stream;
  }
}

function isWritable(stream: ProcessStream): stream is Writable {
  return typeof (stream as Writable).write === 'function';
}
