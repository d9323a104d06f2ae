// A process with a terminal on this host: the OCI runtime makes a pty in the container and sends
// its master over a console socket (console-socket.ts); the daemon copies containerd's stdin into
// the master and the master's output into containerd's stdout. A terminal has no separate
// stderr, and its input no end of its own: CloseIO sends the end-of-file character instead.
import { ReadStream as TtyStream } from 'node:tty';
import type { WindowSize } from '../base/model.js';
import { setWindowSize } from '../linux/libc/files.js';
import { ConsoleSocket } from './console-socket.js';
import type { StdioCopies } from './copies.js';
import { type StdioEndpoints, streamOf } from './endpoints.js';

/** End of Transmission: a terminal's end-of-file character (VEOF) by default. */
const EOT = Buffer.from([0x04]);

export class Console {
  private socket: ConsoleSocket | undefined;
  private terminal: TtyStream | undefined;
  private masterFd = -1;

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
    this.masterFd = master;
    // One tty handle both reads and writes the master; the event loop drives it (non-blocking).
    const terminal = copies.held.hold(new TtyStream(master), 'terminal');
    this.terminal = terminal;
    // Once every holder of the pty's other side is gone, the master reads end-of-file or fails
    // with EIO; either way the terminal closes, and its output ends with it.
    copies.copyOutput(terminal, streamOf(endpoints.stdout));
    const stdin = streamOf(endpoints.stdin);
    if (stdin) {
      copies.copyStdin(stdin, {
        writable: terminal,
        endsWithSource: false,
        end: () => {
          if (!terminal.destroyed) terminal.write(EOT);
        },
        // The terminal is the output's source too: it stays, only the copy into it stops.
        abort: () => undefined,
      });
    }
  }

  /** Resizes the terminal; before it is attached or once it is gone there is nothing to resize. */
  resize(size: WindowSize): void {
    if (!this.terminal || this.terminal.destroyed) return;
    setWindowSize(this.masterFd, { rows: size.height, columns: size.width });
  }

  /** Closes the console socket if the master never came; the terminal goes with the copies. */
  closeSocket(): void {
    this.socket?.close();
    this.socket = undefined;
  }
}
