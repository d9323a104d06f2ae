// CRI's streaming Exec and Attach (the URL that the Exec and Attach RPCs return), spoken the way
// kubectl speaks it over WebSocket: every message starts with a channel byte (0 stdin, 1 stdout,
// 2 stderr, 3 the final status, 4 terminal resizes); protocol v5 adds a close message
// (255, channel) with which the client ends its stdin.
import { Code, RuntimeError } from '../base/errors.js';
import { connectWebSocket, type WebSocketConnection } from './websocket.js';

export const REMOTE_COMMAND_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'];
const V5 = 'v5.channel.k8s.io';

const Channel = { Stdin: 0, Stdout: 1, Stderr: 2, Status: 3, Resize: 4, Close: 255 } as const;

export interface RemoteCommandResult {
  stdout: string;
  stderr: string;
  /** The process's exit code as the server reported it; undefined when it reported none. */
  exitCode: number | undefined;
  /** The server's failure message, if it reported a failure. */
  failure?: string;
}

/** The exit code in a metav1.Status from the status channel (0 for Success). */
export function exitCodeOfStatus(status: {
  status?: string;
  reason?: string;
  details?: { causes?: { reason?: string; message?: string }[] };
}): number | undefined {
  if (status.status === 'Success') return 0;
  if (status.reason !== 'NonZeroExitCode') return undefined;
  const cause = status.details?.causes?.find((c) => c.reason === 'ExitCode');
  const code = Number(cause?.message);
  return Number.isInteger(code) ? code : undefined;
}

export class RemoteCommand {
  private readonly output = { stdout: [] as Buffer[], stderr: [] as Buffer[] };
  private status: { status?: string; message?: string; reason?: string } | undefined;
  private readonly watchers = new Set<() => void>();
  /** Settles when the server has closed the connection. */
  readonly done: Promise<RemoteCommandResult>;

  private constructor(private readonly connection: WebSocketConnection) {
    this.done = new Promise((resolve) => connection.once('close', () => resolve(this.result())));
    connection.start((message) => this.onMessage(message));
  }

  static async connect(url: string): Promise<RemoteCommand> {
    return new RemoteCommand(await connectWebSocket(url, REMOTE_COMMAND_PROTOCOLS));
  }

  get protocol(): string {
    return this.connection.protocol;
  }

  text(stream: 'stdout' | 'stderr'): string {
    return Buffer.concat(this.output[stream]).toString();
  }

  writeStdin(data: string | Buffer): void {
    this.connection.send(Buffer.concat([Buffer.from([Channel.Stdin]), Buffer.from(data)]));
  }

  /** Ends the remote process's stdin (protocol v5 only). */
  closeStdin(): void {
    if (this.protocol !== V5)
      throw new RuntimeError(Code.FailedPrecondition, `closing stdin needs ${V5}, the server chose ${this.protocol}`);
    this.connection.send(Buffer.from([Channel.Close, Channel.Stdin]));
  }

  resize(width: number, height: number): void {
    this.connection.send(Buffer.concat([Buffer.from([Channel.Resize]), Buffer.from(JSON.stringify({ Width: width, Height: height }))]));
  }

  /** Resolves with stdout once it matches `pattern`; DeadlineExceeded after `timeoutMs`. */
  waitForStdout(pattern: RegExp, timeoutMs: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const text = this.text('stdout');
        if (!pattern.test(text)) return;
        cleanup();
        resolve(text);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new RuntimeError(
            Code.DeadlineExceeded,
            `stdout did not match ${pattern} within ${timeoutMs} ms: ${JSON.stringify(this.text('stdout'))}`,
          ),
        );
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.watchers.delete(check);
      };
      this.watchers.add(check);
      check();
    });
  }

  close(): void {
    this.connection.close();
  }

  private onMessage(message: Buffer): void {
    if (message.length === 0) return;
    const data = message.subarray(1);
    switch (message[0]) {
      case Channel.Stdout:
        this.output.stdout.push(data);
        for (const check of this.watchers) check();
        break;
      case Channel.Stderr:
        this.output.stderr.push(data);
        break;
      case Channel.Status:
        if (data.length > 0) this.status = JSON.parse(data.toString()) as typeof this.status;
        break;
    }
  }

  private result(): RemoteCommandResult {
    const result: RemoteCommandResult = {
      stdout: this.text('stdout'),
      stderr: this.text('stderr'),
      exitCode: this.status ? exitCodeOfStatus(this.status) : undefined,
    };
    if (this.status && this.status.status !== 'Success') result.failure = this.status.message ?? this.status.reason ?? 'failure';
    return result;
  }
}
