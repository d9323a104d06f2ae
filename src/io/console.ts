// A process with a terminal on this host: the OCI runtime makes a pty in the container and sends
// its master over a console socket (console-socket.ts); the daemon copies containerd's stdin into
// the master and the master's output into containerd's stdout. A terminal has no separate
// stderr, and its input no end of its own: CloseIO sends the end-of-file character instead.
import type { WindowSize } from '../base/model.js';
import { ConsoleSocket } from './console-socket.js';
import type { StdioCopies } from './copies.js';
import { type StdioEndpoints, streamOf } from './endpoints.js';
import { PtyMaster } from './pty-master.js';

/** End of Transmission: a terminal's end-of-file character (VEOF) by default. */
const EOT = Buffer.from([0x04]);

export class Console {
  private socket: ConsoleSocket | undefined;
  private terminal: PtyMaster | undefined;

  private constructor(socket: ConsoleSocket) {
    this.socket = socket;
  }

  /** Listens for the master on a new console socket in `dir` (private, with a short path). */
  static open(dir: string): Console {
    return new Console(ConsoleSocket.open(dir));
  }

  /** What the runtime is given as --console-socket. */
  get socketPath(): string | undefined {
    return this.socket?.path;
  }

  /** The runtime has returned: takes the master it sent and copies between it and the endpoints. */
  attach(endpoints: StdioEndpoints, copies: StdioCopies): void {
    if (!this.socket) return;
    const master = this.socket.receiveMaster();
    this.closeSocket();
    const terminal = new PtyMaster(master);
    this.terminal = terminal;
    const input = copies.held.hold(terminal.input, 'terminal');
    // Its output ends once every holder of the pty's other side is gone and all they wrote is read.
    copies.copyOutput(terminal.output, streamOf(endpoints.stdout));
    const stdin = streamOf(endpoints.stdin);
    if (stdin) {
      copies.copyStdin(stdin, {
        writable: input,
        endsWithSource: false,
        end: () => {
          if (!input.destroyed) input.write(EOT);
        },
        // The terminal is the output's source too: it stays, only the copy into it stops.
        abort: () => undefined,
      });
    }
  }

  /** Resizes the terminal; before it is attached or once it is gone there is nothing to resize. */
  resize(size: WindowSize): void {
    this.terminal?.resize(size);
  }

  /** Closes the console socket if the master never came. */
  private closeSocket(): void {
    this.socket?.close();
    this.socket = undefined;
  }

  /** Releases the console socket and the terminal. Idempotent. */
  close(): void {
    this.closeSocket();
    this.terminal?.close();
  }
}
