// The terminal of a process the agent started with one (StdioRequest.terminal). runc makes a pty
// in the container and sends its master over a console socket before `create` or
// `exec --detach` returns (io/console-socket.ts); the agent holds the master (io/pty-master.ts):
// what the process writes on its terminal is ReadStdio's STDOUT (a terminal has no stderr of its
// own), WriteStdin types into it, ResizePty sets its window size. Its output ends once the kernel
// says EIO: every holder of the terminal's other side is gone and all they wrote has been read.
//
// A terminal's input has no end of its own: CloseStdin types the end-of-file character, as the
// runc kind does on the host (io/console.ts), so that a program reading the terminal (`cat`)
// reads end-of-file and the terminal stays, with the output still on its way.
import { failedPrecondition, internal } from '../../base/errors.js';
import type { WindowSize } from '../../base/model.js';
import { ConsoleSocket } from '../../io/console-socket.js';
import { PtyMaster } from '../../io/pty-master.js';
import type { ProcessIo } from '../../oci/runtime.js';
import { OutputBuffer } from './output-buffer.js';
import { OUTPUT_BUFFER_LIMIT, type GuestStdio, type OutputStream, type StdioWanted } from './process-stdio.js';

/** End of Transmission: a terminal's end-of-file character (VEOF) by default. */
const EOT = Buffer.from([0x04]);

export class ProcessTerminal implements GuestStdio {
  readonly runtimeIo: ProcessIo;
  private socket: ConsoleSocket | undefined;
  private terminal: PtyMaster | undefined;
  private stdout: OutputBuffer | undefined;
  private stdinClosed = false;
  private released = false;

  /** Listens for the master on a new console socket in `consoleDir` (private, with a short path). */
  constructor(
    private readonly wanted: StdioWanted,
    consoleDir: string,
    private readonly outputLimit = OUTPUT_BUFFER_LIMIT,
  ) {
    this.socket = ConsoleSocket.open(consoleDir);
    this.runtimeIo = { consoleSocket: this.socket.path };
  }

  /** runc has returned: takes the master it sent and reads the terminal's output. */
  started(): void {
    const socket = this.socket;
    if (!socket) throw internal('the terminal was taken already');
    let master: number;
    try {
      master = socket.receiveMaster();
    } finally {
      socket.close();
      this.socket = undefined;
    }
    const terminal = new PtyMaster(master);
    this.terminal = terminal;
    const { output } = terminal;
    if (!this.wanted.stdout) {
      // Nobody on the host takes it: drained, so that the process never waits on a full terminal.
      output.resume();
      return;
    }
    const buffer = new OutputBuffer({ limit: this.outputLimit, pause: () => output.pause(), resume: () => output.resume() });
    this.stdout = buffer;
    output.on('data', (chunk: Buffer) => buffer.push(chunk));
    output.once('end', () => buffer.end());
    output.once('close', () => buffer.end());
    output.on('error', () => buffer.end());
  }

  output(stream: OutputStream): OutputBuffer | undefined {
    return stream === 'stdout' ? this.stdout : undefined;
  }

  async writeStdin(data: Uint8Array): Promise<void> {
    const input = this.openInput();
    if (data.length === 0) return;
    await new Promise<void>((resolve, reject) => {
      input.write(data, (err) => (err ? reject(failedPrecondition(`write to the terminal: ${err.message}`)) : resolve()));
    });
  }

  /** The process reads end-of-file once it has read what was typed before (at the start of a line). */
  closeStdin(): void {
    const input = this.openInput();
    this.stdinClosed = true;
    // A terminal whose other side is gone takes nothing more: nobody is left to read the end.
    if (!input.destroyed) input.write(EOT);
  }

  resize(size: WindowSize): void {
    this.terminal?.resize(size);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.stdinClosed = true;
    this.socket?.close();
    this.socket = undefined;
    this.terminal?.close();
    this.stdout?.end();
  }

  private openInput() {
    if (!this.wanted.stdin) throw failedPrecondition('the process was created without stdin');
    if (this.stdinClosed) throw failedPrecondition('stdin is closed');
    if (!this.terminal) throw failedPrecondition('the terminal is not there yet');
    return this.terminal.input;
  }
}
