// Writes frames to a socket (or any byte stream) shared by every stream of a connection, and tells senders when the
// socket has room again.

import type { Duplex } from 'node:stream';
import { Code, RuntimeError } from '../../base/errors.js';
import { encodeHeader, MAX_PAYLOAD_LENGTH, oversizedError, type FrameType } from './frame.js';

const EMPTY = new Uint8Array(0);

/** Told when the socket's buffer fills up (a write returned false) and when it has drained. */
export interface BackPressureListener {
  full(): void;
  room(): void;
}

export class FrameWriter {
  private waiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];

  constructor(
    private readonly socket: Duplex,
    private readonly backPressure?: BackPressureListener,
  ) {
    socket.on('drain', () => {
      this.backPressure?.room();
      this.settleWaiters(undefined);
    });
    socket.on('close', () => this.settleWaiters(new RuntimeError(Code.Unavailable, 'ttrpc connection closed')));
  }

  get open(): boolean {
    return !this.socket.destroyed && !this.socket.writableEnded;
  }

  /**
   * Queues one whole frame. Header and payload go out together, so frames of concurrent
   * streams never interleave. Returns false when the socket's buffer is full: a sender that
   * can wait should then await `drained()`.
   */
  write(streamId: number, type: FrameType, flags: number, payload: Uint8Array = EMPTY): boolean {
    if (payload.length > MAX_PAYLOAD_LENGTH) throw oversizedError(payload.length);
    if (!this.open) throw new RuntimeError(Code.Unavailable, 'ttrpc connection closed');
    const header = encodeHeader(streamId, type, flags, payload.length);
    let hasRoom: boolean;
    if (payload.length === 0) {
      hasRoom = this.socket.write(header);
    } else {
      this.socket.cork();
      this.socket.write(header);
      hasRoom = this.socket.write(payload);
      this.socket.uncork();
    }
    if (!hasRoom) this.backPressure?.full();
    return hasRoom;
  }

  /** Writes a frame and waits until the socket can take more (back-pressure for streams). */
  async send(streamId: number, type: FrameType, flags: number, payload?: Uint8Array): Promise<void> {
    if (!this.write(streamId, type, flags, payload)) await this.drained();
  }

  private drained(): Promise<void> {
    if (!this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private settleWaiters(err: RuntimeError | undefined): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) {
      if (err) waiter.reject(err);
      else waiter.resolve();
    }
  }
}
