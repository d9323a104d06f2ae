// The stdio of one container process on this host (an init or an exec), whichever way containerd
// asked for it. containerd's endpoints are opened once (endpoints.ts), then reach the process:
//
// - FIFOs, no terminal: the process inherits the FIFOs themselves, nothing is copied
//   (descriptors.ts);
// - streams (io_type "streaming"), or a stdin FIFO with `copyStdin`, no terminal: the process
//   inherits pipes, and the daemon copies between them and the endpoints (pipes.ts);
// - a terminal: the OCI runtime sends the master of the pty it made over a console socket, and
//   the daemon copies between it and the endpoints (console.ts).
//
// Lifecycle: `open` before the runtime runs (its `runtime` part is what the runtime is given),
// `started` once the runtime has returned, `finish` when the process has exited (everything it
// wrote is delivered, within bounds: output-copy.ts), `close` to drop everything at once (a
// failed start, a delete). A process elsewhere (in a guest) has forwarded-stdio.ts instead.
import type { Logger } from 'pino';
import type { WindowSize } from '../base/model.js';
import type { Stdio } from '../base/model.js';
import { Console } from './console.js';
import { StdioCopies } from './copies.js';
import { InheritedStdio, type StdioTarget } from './descriptors.js';
import { StdioEndpoints, type StreamSource } from './endpoints.js';
import { StdioSession } from './stdio-session.js';
import { pipeStreams } from './pipes.js';

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

/** What the OCI runtime is given: the process's stdio descriptors, or a console socket. */
export interface RuntimeStdio {
  stdio: [StdioTarget, StdioTarget, StdioTarget];
  consoleSocket?: string;
}

export class ProcessStdio extends StdioSession {
  readonly runtime: RuntimeStdio;

  private constructor(
    endpoints: StdioEndpoints,
    private readonly inherited: InheritedStdio,
    copies: StdioCopies,
    private readonly terminal: Console | undefined,
  ) {
    super(endpoints, copies);
    this.runtime = { stdio: inherited.targets };
    if (terminal) this.runtime.consoleSocket = terminal.socketPath;
  }

  static async open(options: ProcessStdioOptions): Promise<ProcessStdio> {
    const { stdio } = options;
    const endpoints = await StdioEndpoints.open({
      stdio,
      streams: options.streams,
      streamTimeoutMs: options.streamTimeoutMs,
      fifos: stdio.terminal
        ? { stdin: 'terminal', outputs: 'stream' }
        : { stdin: options.copyStdin ? 'stream' : 'descriptor', outputs: 'descriptor' },
      log: options.log,
    });
    const inherited = new InheritedStdio(endpoints);
    const copies = new StdioCopies(options.log);
    let terminal: Console | undefined;
    try {
      if (stdio.terminal) terminal = Console.open(options.consoleDir);
      else pipeStreams(endpoints, inherited, copies);
      return new ProcessStdio(endpoints, inherited, copies, terminal);
    } catch (err) {
      inherited.release();
      copies.close();
      endpoints.close();
      throw err;
    }
  }

  /** The runtime has returned: the process holds its own descriptors; copying begins. */
  started(): void {
    this.inherited.release();
    this.endpoints.closeDescriptors();
    this.terminal?.attach(this.endpoints, this.copies);
  }

  /** Resizes the terminal; a process without one has nothing to resize (as runc's shim). */
  resize(size: WindowSize): void {
    this.terminal?.resize(size);
  }

  /** What the process inherited (until the runtime handed it on) and its terminal. */
  protected releaseOwn(): void {
    this.inherited.release();
    this.terminal?.close();
  }
}
