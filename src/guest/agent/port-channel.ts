// The agent's end of the virtio-serial channel: one ttrpc connection at a time over a character
// device that libuv cannot watch (net.Socket refuses it), read and written here with non-blocking
// system calls, waiting for readiness with poll(2) on a pool thread.
//
// What virtio_console does decides the shape: while no host is connected to the port's chardev a
// read returns 0 at once (and poll says POLLIN|POLLHUP); once one connects, reads give its bytes.
// A write while no host is connected would block until one comes (and then hand it bytes meant
// for its predecessor): the device is non-blocking, so such a write fails with EAGAIN instead,
// and is dropped once its connection is gone.
//
// So a connection begins with the first bytes after a quiet port and ends at end-of-file: the
// host went away, its calls are aborted and their answers dropped (containers keep running), and
// the channel waits (polling every POLL_INTERVAL_MS) for the next host, which gets a fresh
// connection. A connection the ttrpc server drops itself (a protocol violation) cannot tell the
// host so on this channel: what the host sends after that is discarded until it reconnects.
//
// A host that leaves and comes back before the agent's next read sees no end-of-file in between
// (virtio_console keeps no trace of the gap): its first call then lands on its predecessor's
// connection, which takes a repeated stream id 1 for a violation. Hosts must leave at least
// POLL_INTERVAL_MS between a disconnect and the next connect, and reconnect if the first call
// of a connection fails with InvalidArgument or gets no answer.
import { readSync, writeSync } from 'node:fs';
import { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';

import { pollWaiting, POLLIN } from '../../linux/libc/files.js';

const READ_CHUNK_BYTES = 64 * 1024;
/** How often a quiet port (no host connected) is asked whether one has come. */
export const POLL_INTERVAL_MS = 100;
/** How long a write waits for room before it looks again (the host reads slowly, or left). */
const WRITE_RETRY_MS = 10;
/** One readiness wait; bounded so that a wait never outlives what it waits for by long. */
const READY_WAIT_MS = 1_000;

/** One host's connection: bytes read from the port are pushed into it; what ttrpc writes goes to the port. */
class PortConnection extends Duplex {
  private wantMore: (() => void) | undefined;

  constructor(private readonly writeFd: number) {
    super();
  }

  /** Resolves when the reader (ttrpc) wants more, or the connection is gone. */
  waitForDemand(): Promise<void> {
    if (this.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      this.wantMore = resolve;
    });
  }

  override _read(): void {
    const wake = this.wantMore;
    this.wantMore = undefined;
    wake?.();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.writeAll(chunk).then(
      () => done(),
      (err: Error) => done(err),
    );
  }

  private async writeAll(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      // A connection that ended (its host left) has nobody to answer: the rest is dropped.
      if (this.destroyed) return;
      try {
        offset += writeSync(this.writeFd, chunk, offset, chunk.length - offset);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
        await sleep(WRITE_RETRY_MS);
      }
    }
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    this._read();
    done(err);
  }
}

/** The descriptors of the port: one, opened read-write, in the guest; two FIFOs in tests. */
export interface PortEnds {
  read: number;
  write: number;
}

export class PortChannel {
  private connection: PortConnection | undefined;
  /** The server dropped the connection while the host stays: its bytes go nowhere until it reconnects. */
  private discarding = false;
  private stopped = false;

  /**
   * `ends` are non-blocking; `serve` takes each new connection (TtrpcServer.serveStream).
   */
  constructor(
    private readonly ends: PortEnds,
    private readonly serve: (stream: Duplex) => void,
    private readonly log: Logger,
  ) {}

  /** Serves hosts one after another, until stop() (in the guest: forever). */
  async run(): Promise<void> {
    while (!this.stopped) {
      const read = await this.read();
      if (read === 'again') continue;
      if (read === 'eof') {
        this.hostLeft();
        await sleep(POLL_INTERVAL_MS);
        continue;
      }
      await this.deliver(read);
    }
    this.hostLeft();
  }

  /** A host is connected (its bytes came after the last end-of-file). */
  get hostConnected(): boolean {
    return this.connection !== undefined || this.discarding;
  }

  /** Ends run() within a readiness wait (a second); the current connection is dropped. */
  stop(): void {
    this.stopped = true;
  }

  /** Bytes, 'eof' (no host), or 'again' after a wait for readiness. */
  private async read(): Promise<Buffer | 'eof' | 'again'> {
    const buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES);
    let count: number;
    try {
      count = readSync(this.ends.read, buffer, 0, buffer.length, null);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EAGAIN') {
        // Never seen on a virtio port; treated as a hang-up so that a fault cannot spin the loop.
        this.log.warn({ error: (err as Error).message }, 'reading the agent port failed');
        return 'eof';
      }
      await pollWaiting(this.ends.read, POLLIN, READY_WAIT_MS);
      return 'again';
    }
    return count === 0 ? 'eof' : buffer.subarray(0, count);
  }

  private async deliver(bytes: Buffer): Promise<void> {
    if (this.discarding) return;
    if (!this.connection) {
      this.connection = new PortConnection(this.ends.write);
      this.log.info('host connected to the agent port');
      this.serve(this.connection);
    }
    const connection = this.connection;
    if (connection.destroyed) {
      this.discarding = true;
      this.log.warn('the agent dropped the connection: discarding what the host sends until it reconnects');
      return;
    }
    if (!connection.push(bytes)) await connection.waitForDemand();
  }

  private hostLeft(): void {
    if (this.connection) this.log.info('host left the agent port: its calls are dropped');
    this.connection?.destroy();
    this.connection = undefined;
    this.discarding = false;
  }
}
