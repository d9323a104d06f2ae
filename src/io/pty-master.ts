// The master side of a process's terminal (the pty the OCI runtime made in the container and
// sent over the console socket): the daemon writes the process's input into it, reads its
// output from it, and sets its window size.
//
// The output ends only when the kernel has nothing more for it: a read fails with EIO once every
// holder of the terminal's other side is gone and everything they wrote has been read. Node's tty
// stream (libuv) may end it sooner: when poll reports POLLHUP after a read that did not fill its
// buffer, libuv reports end-of-file without reading again (uv__stream_io, src/unix/stream.c).
// That is right for a pipe, whose data is in its buffer before its last writer closes it, but
// not for a pty: the kernel hands what the other side wrote on to the master through a work
// queue (the tty flip buffer) and a read takes at most what the line discipline holds (4 KiB). So
// a process that wrote a line and exited could have its last line still on the way when libuv
// saw the hang-up; the line was lost (a terminal exec's last output, about 1 run in 25 on a
// loaded machine). When libuv ends the stream, the rest is therefore read from the master
// directly, until the kernel says EIO.
import { readSync } from 'node:fs';
import { Readable, type Writable } from 'node:stream';
import { ReadStream as TtyStream } from 'node:tty';
import type { WindowSize } from '../base/model.js';
import { closeFd, duplicateFd, setNonBlocking, setWindowSize } from '../linux/libc/files.js';

const READ_BYTES = 64 * 1024;

export class PtyMaster {
  /** What the terminal's other side wrote; it ends after the last byte the kernel has for the master. */
  readonly output: Readable;
  /** The terminal's input: what is written here, the process reads. */
  readonly input: Writable;
  /** Node's stream on a duplicate of the master: it reads while the terminal is open, and writes. */
  private readonly tty: TtyStream;
  private outputEnded = false;
  private closed = false;

  /** Takes the pty master `fd` over (it is closed by close(), or at once if this throws). */
  constructor(private readonly fd: number) {
    // The stream closes its descriptor when it ends; `fd` stays open for the last reads and resizes.
    let streamFd = -1;
    try {
      streamFd = duplicateFd(fd);
      this.tty = new TtyStream(streamFd);
    } catch (err) {
      if (streamFd >= 0) closeFd(streamFd);
      closeFd(fd);
      throw err;
    }
    this.input = this.tty;
    this.output = new Readable({
      read: () => {
        this.tty.resume();
      },
      destroy: (err, callback) => {
        this.tty.destroy();
        callback(err);
      },
    });
    this.tty.on('data', (chunk: Buffer) => {
      if (!this.output.push(chunk)) this.tty.pause();
    });
    // libuv's end-of-file: the other side has hung up, but not everything it wrote may be read.
    this.tty.once('end', () => this.endOutput({ readRest: true }));
    // A read failed (EIO: everything was read; anything else: nothing more can be) or the stream
    // was destroyed. The failure itself is no news, but must be listened for.
    this.tty.on('error', () => undefined);
    this.tty.once('close', () => this.endOutput({ readRest: false }));
  }

  /** Sets the window size; nothing to do once the terminal is gone. */
  resize(size: WindowSize): void {
    if (this.closed || this.tty.destroyed) return;
    setWindowSize(this.fd, { rows: size.height, columns: size.width });
  }

  /** Drops everything now. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.tty.destroy();
    this.output.destroy();
    closeFd(this.fd);
  }

  private endOutput(options: { readRest: boolean }): void {
    if (this.outputEnded || this.closed) return;
    this.outputEnded = true;
    if (options.readRest) for (const chunk of this.remaining()) this.output.push(chunk);
    this.output.push(null);
  }

  /**
   * What the kernel still holds for the master, read at once: the other side is gone, so nothing
   * more arrives and the reads end with EIO (a read waits for the flip buffer before it says so).
   * Any other failure ends them too: this runs in an event handler and must not throw.
   */
  private *remaining(): Generator<Buffer> {
    try {
      setNonBlocking(this.fd, true);
      for (;;) {
        const buffer = Buffer.allocUnsafe(READ_BYTES);
        const bytes = readSync(this.fd, buffer);
        if (bytes === 0) return;
        yield buffer.subarray(0, bytes);
      }
    } catch {
      // EIO: everything was read. EAGAIN: someone opened the other side again; it is not waited for.
    }
  }
}
