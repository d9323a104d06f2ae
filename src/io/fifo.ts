// Opening the stdio FIFOs that containerd made for a process: as descriptors the process
// inherits directly (no copy loop in the daemon), or as Node streams when the daemon copies
// between them and a terminal.
import { closeSync, constants, openSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { setNonBlocking } from '../linux/libc/files.js';

/**
 * stdin for a process that reads the FIFO itself. Opened read-only, so that the process sees
 * end-of-file once containerd closes its writer (a read-write open would make the process a
 * writer of its own stdin, and EOF would never come). O_NONBLOCK only keeps the open from
 * waiting for a writer; it is cleared again, because programs expect a blocking stdin.
 */
export function openStdinFifo(path: string): number {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    setNonBlocking(fd, false);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return fd;
}

/**
 * stdout or stderr. Opened read-write: that never blocks and never fails for want of a reader,
 * and containerd's reader is already there. The reader sees end-of-file once every holder of a
 * write end (the process, its children, and this descriptor until it is closed) is gone.
 */
export function openOutputFifo(path: string): number {
  return openSync(path, constants.O_RDWR);
}

/**
 * The stdin FIFO as a stream the daemon reads (non-blocking, served by the event loop), to copy
 * into a terminal. Opened read-write: a read-only reader would see end-of-file at once if it
 * read before containerd's writer had opened its end, and a terminal's input has no end to pass
 * on anyway.
 */
export function fifoReader(path: string): Readable {
  return new Socket({ fd: openSync(path, constants.O_RDWR), readable: true, writable: false });
}

/**
 * The stdin FIFO as a stream the daemon reads, to copy into a pipe the process reads. Opened
 * read-only like openStdinFifo, so that end-of-file from containerd passes on to the process.
 */
export function fifoStdinReader(path: string): Readable {
  return new Socket({ fd: openSync(path, constants.O_RDONLY | constants.O_NONBLOCK), readable: true, writable: false });
}

/** An output FIFO as a stream the daemon writes; ending it closes the daemon's write end. */
export function fifoWriter(path: string): Writable {
  return new Socket({ fd: openOutputFifo(path), readable: false, writable: true });
}
