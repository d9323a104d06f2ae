// The stdio of a process that runs elsewhere, as in a guest VM where an agent of ours starts it:
// the daemon forwards between containerd's endpoints (FIFOs or streams, opened as for any other
// process: endpoints.ts) and a byte channel to where the process runs, such as one stream per
// stdio of a multiplexed virtio-serial connection to the agent. The rules are those of a process
// on this host (process-stdio.ts): everything written before the exit is delivered, within
// bounds (output-copy.ts), and CloseIO or a kill ends stdin as through a pipe or on a terminal.
//
// Lifecycle: `open` before the process is created (a stream containerd did not open fails the
// call early), `forward` once the process and its channel exist, `finish` when it has exited,
// `close` to drop everything at once. With `keptAs`, the FIFOs stay open in the fd keeper until
// then (kept-fifos.ts): the process outlives the daemon, and the next run forwards its output on.
import type { Readable, Writable } from 'node:stream';
import type { Logger } from 'pino';
import { internal } from '../base/errors.js';
import type { Stdio, WindowSize } from '../base/model.js';
import { StdioCopies } from './copies.js';
import { StdioEndpoints, type StreamSource, streamOf } from './endpoints.js';
import { type KeptAs, KeptFifos } from './kept-fifos.js';
import { StdioSession } from './stdio-session.js';

/** One process's stdio as a channel to where the process runs carries it. */
export interface StdioChannel {
  /**
   * The process's stdin. Ending it ends the process's stdin after what was written: end-of-file
   * through a pipe, the end-of-file character on a terminal. Destroying it does the same at once,
   * dropping what was not sent yet.
   */
  readonly stdin: Writable;
  /** The process's stdout (the terminal's output, with one); ends once nothing there holds it open. */
  readonly stdout: Readable;
  /** The process's stderr; none with a terminal, which has no separate stderr. */
  readonly stderr?: Readable;
  /** Sets the size of the process's terminal, resolving once it is set; called only for a process with one. */
  resize(size: WindowSize): Promise<void>;
}

export interface ForwardedStdioOptions {
  stdio: Stdio;
  streams: StreamSource;
  log: Logger;
  /** How long to wait for a stream containerd has not opened yet (default 10 s). */
  streamTimeoutMs?: number;
  /** Keeps the FIFOs open in the fd keeper, under this name, until the stdio is closed. */
  keptAs?: KeptAs;
}

export class ForwardedStdio extends StdioSession {
  private channel: StdioChannel | undefined;

  private constructor(
    endpoints: StdioEndpoints,
    copies: StdioCopies,
    private readonly terminal: boolean,
    private readonly kept: KeptFifos | undefined,
  ) {
    super(endpoints, copies);
  }

  static async open(options: ForwardedStdioOptions): Promise<ForwardedStdio> {
    const { terminal } = options.stdio;
    const endpoints = await StdioEndpoints.open({
      stdio: options.stdio,
      streams: options.streams,
      streamTimeoutMs: options.streamTimeoutMs,
      // The daemon reads and writes every FIFO itself; stdin's end passes on as through a pipe,
      // except to a terminal.
      fifos: { stdin: terminal ? 'terminal' : 'stream', outputs: 'stream' },
      log: options.log,
    });
    const kept = options.keptAs && KeptFifos.keep(options.stdio, options.keptAs, options.log);
    return new ForwardedStdio(endpoints, new StdioCopies(options.log), terminal, kept);
  }

  /** The process and its channel exist: copying begins both ways. The channel is ours from now on. */
  forward(channel: StdioChannel): void {
    if (this.channel) throw internal('the stdio of this process is forwarded already');
    this.channel = channel;
    const { held } = this.copies;
    const input = held.hold(channel.stdin, 'channel stdin');
    const stdout = held.hold(channel.stdout, 'channel stdout');
    const stderr = channel.stderr && held.hold(channel.stderr, 'channel stderr');
    if (this.closed) {
      this.copies.close();
      return;
    }
    const stdin = streamOf(this.endpoints.stdin);
    if (stdin) {
      // Without a terminal, containerd's end of stdin is the process's end-of-file; with one,
      // only CloseIO ends it. Either way the channel's end carries it to the process.
      this.copies.copyStdin(stdin, {
        writable: input,
        endsWithSource: !this.terminal,
        end: () => input.end(),
        abort: () => input.destroy(),
      });
    } else if (!this.terminal) {
      // No stdin, as from /dev/null: end-of-file at once.
      input.end();
    }
    this.copies.copyOutput(stdout, streamOf(this.endpoints.stdout));
    if (stderr) this.copies.copyOutput(stderr, streamOf(this.endpoints.stderr));
    else streamOf(this.endpoints.stderr)?.end();
  }

  /**
   * Bytes of an output handed to containerd's end that it has not taken yet (queued in this
   * process, lost if it dies): a channel that acknowledges what was delivered counts them out.
   */
  unwritten(slot: 'stdout' | 'stderr'): number {
    const sink = this.endpoints[slot];
    return sink === undefined || typeof sink === 'number' ? 0 : sink.writableLength;
  }

  /** Resizes the process's terminal, where it runs; a process without one has nothing to resize. */
  async resize(size: WindowSize): Promise<void> {
    if (this.terminal && !this.closed) await this.channel?.resize(size);
  }

  /** The channel was held by the copies, which release it; the keeper lets go of the FIFOs. */
  protected releaseOwn(): void {
    this.kept?.release();
  }
}
