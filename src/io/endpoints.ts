// containerd's stdio endpoints for one process, opened once before the process starts, whatever
// way its stdio reaches it afterwards. containerd names each of stdin, stdout and stderr by a
// string: nothing, a FIFO it made, or a stream of the Streaming API (io_type "streaming") it
// opens to the sandbox. Opened, each is what it is: a descriptor the process is to inherit, or a
// Node stream the daemon copies. How a FIFO is opened depends on who reads or writes it
// (fifo.ts has the rules), so the caller says which it needs.
import { closeSync } from 'node:fs';
import { Readable, type Writable } from 'node:stream';
import type { Logger } from 'pino';
import { failedPrecondition, internal, invalidArgument } from '../base/errors.js';
import type { Stdio } from '../base/model.js';
import type { ProcessStream } from '../base/streams.js';
import { fifoReader, fifoStdinReader, fifoWriter, openOutputFifo, openStdinFifo } from './fifo.js';
import { HeldStreams } from './held-streams.js';

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

/** Where streams that containerd opened for the sandbox are taken from (base's StreamRegistry). */
export interface StreamSource {
  take(id: string, timeoutMs: number): Promise<ProcessStream>;
}

/**
 * How the daemon holds a stdin FIFO: as a descriptor the process reads itself; as a stream it
 * copies, passing containerd's end of input on; or as a stream it copies into a terminal, whose
 * input has no end to pass on.
 */
export type StdinFifoUse = 'descriptor' | 'stream' | 'terminal';
/** How the daemon holds an output FIFO: as a descriptor the process writes itself, or as a stream it copies into. */
export type OutputFifoUse = 'descriptor' | 'stream';

export interface EndpointsOptions {
  stdio: Stdio;
  streams: StreamSource;
  /** How long to wait for a stream containerd has not opened yet (default 10 s). */
  streamTimeoutMs?: number;
  fifos: { stdin: StdinFifoUse; outputs: OutputFifoUse };
  log: Logger;
}

/** An opened endpoint: a descriptor to hand on to the process, or a stream the daemon copies. */
export type InputEndpoint = number | Readable;
export type OutputEndpoint = number | Writable;

const DEFAULT_STREAM_TIMEOUT_MS = 10_000;

type Slot = 'stdin' | 'stdout' | 'stderr';

/** An endpoint opened as a stream (its FIFO, if any, for the daemon to copy), or none. */
export function streamOf<S extends Readable | Writable>(endpoint: number | S | undefined): S | undefined {
  if (typeof endpoint === 'number') throw internal('a stdio endpoint was opened as a descriptor where the daemon copies it');
  return endpoint;
}

export class StdioEndpoints {
  private constructor(
    readonly stdin: InputEndpoint | undefined,
    readonly stdout: OutputEndpoint | undefined,
    /** Always absent with a terminal, which has no separate stderr. */
    readonly stderr: OutputEndpoint | undefined,
    private readonly opened: Opened,
  ) {}

  /** Opens all three, or none: on a failure, what was opened is closed again. */
  static async open(options: EndpointsOptions): Promise<StdioEndpoints> {
    const { stdio, fifos } = options;
    const parsed = [stdio.stdin, stdio.stdout, stdio.stderr].map(parseStdioEndpoint) as [StdioEndpoint, StdioEndpoint, StdioEndpoint];
    const opened = new Opened(options.log);
    try {
      const [stdinStream, stdoutStream, stderrStream] = await takeStreams(parsed, options, opened);
      const stdin = openStdin(parsed[0], stdinStream, fifos.stdin, opened);
      const stdout = openOutput('stdout', parsed[1], stdoutStream, fifos.outputs, opened);
      // A stderr stream is taken all the same, so that it is released with the others.
      const stderr = stdio.terminal ? undefined : openOutput('stderr', parsed[2], stderrStream, fifos.outputs, opened);
      return new StdioEndpoints(stdin, stdout, stderr, opened);
    } catch (err) {
      opened.release();
      throw err;
    }
  }

  /** Closes the descriptors: the process holds its own now. */
  closeDescriptors(): void {
    this.opened.closeDescriptors();
  }

  /** Releases everything. Idempotent. */
  close(): void {
    this.opened.release();
  }
}

/** What was opened for one process's endpoints, released together. */
class Opened {
  /** Descriptors not yet closed. */
  private readonly descriptors = new Set<number>();
  readonly held: HeldStreams;

  constructor(log: Logger) {
    this.held = new HeldStreams(log);
  }

  descriptor(fd: number): number {
    this.descriptors.add(fd);
    return fd;
  }

  closeDescriptors(): void {
    for (const fd of this.descriptors) closeSync(fd);
    this.descriptors.clear();
  }

  release(): void {
    this.closeDescriptors();
    this.held.destroyAll();
  }
}

async function takeStreams(parsed: StdioEndpoint[], options: EndpointsOptions, opened: Opened): Promise<(ProcessStream | undefined)[]> {
  const takes = parsed.map((endpoint) =>
    endpoint.kind === 'stream' ? options.streams.take(endpoint.id, options.streamTimeoutMs ?? DEFAULT_STREAM_TIMEOUT_MS) : undefined,
  );
  try {
    const taken = await Promise.all(takes);
    taken.forEach((stream, slot) => {
      if (stream) opened.held.hold(stream, (parsed[slot] as { id: string }).id);
    });
    return taken;
  } catch (err) {
    // Streams that arrive after another failed would be left with nobody to release them.
    for (const take of takes) take?.then(destroy, ignore);
    throw err;
  }
}

function openStdin(
  endpoint: StdioEndpoint,
  taken: ProcessStream | undefined,
  use: StdinFifoUse,
  opened: Opened,
): InputEndpoint | undefined {
  if (endpoint.kind === 'none') return undefined;
  if (endpoint.kind === 'stream') {
    if (!(taken instanceof Readable)) throw failedPrecondition('the stdin stream cannot be read');
    return taken;
  }
  const { path } = endpoint;
  if (use === 'descriptor') return opened.descriptor(openFifo('stdin', path, openStdinFifo));
  return opened.held.hold(openFifo('stdin', path, use === 'terminal' ? fifoReader : fifoStdinReader), 'stdin fifo');
}

function openOutput(
  slot: Slot,
  endpoint: StdioEndpoint,
  taken: ProcessStream | undefined,
  use: OutputFifoUse,
  opened: Opened,
): OutputEndpoint | undefined {
  if (endpoint.kind === 'none') return undefined;
  if (endpoint.kind === 'stream') {
    if (!taken || !isWritable(taken)) throw failedPrecondition(`the ${slot} stream cannot be written`);
    return taken;
  }
  const { path } = endpoint;
  if (use === 'descriptor') return opened.descriptor(openFifo(slot, path, openOutputFifo));
  return opened.held.hold(openFifo(slot, path, fifoWriter), `${slot} fifo`);
}

/** containerd made the FIFO before the call: one that cannot be opened is its failure, not ours. */
function openFifo<T>(slot: Slot, path: string, open: (path: string) => T): T {
  try {
    return open(path);
  } catch (err) {
    throw failedPrecondition(`the ${slot} FIFO ${path} cannot be opened: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

const destroy = (stream: ProcessStream): void => {
  stream.destroy();
};
const ignore = (): void => undefined;

function isWritable(stream: ProcessStream): stream is Writable {
  return typeof (stream as Writable).write === 'function';
}
