// A ttrpc client over one unix socket connection: unary calls and streams multiplexed on odd,
// strictly increasing stream ids. Losing the connection fails everything pending with
// Unavailable.

import { create, toBinary } from '@bufbuild/protobuf';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { RequestSchema } from '../../api/ttrpc/ttrpc_pb.js';
import { Code, RuntimeError, failedPrecondition } from '../../base/errors.js';
import { metadataToWire, readResponse, timeoutNanos, type MetadataInit } from './envelope.js';
import { Flag, FrameDecoder, FrameType, oversizedError, type Frame } from './frame.js';
import { InboundQueue, ReadThrottle } from './inbound.js';
import { FrameWriter } from './writer.js';

export interface ConnectOptions {
  /** How long to wait for the connection; DeadlineExceeded afterwards. */
  timeoutMs?: number;
}

export interface CallOptions {
  /** Sent as the request's timeout_nano, and enforced here too (DeadlineExceeded). */
  timeoutMs?: number;
  metadata?: MetadataInit;
  /** Aborting it fails the call with Cancelled (ttrpc cannot tell the server). */
  signal?: AbortSignal;
}

export interface StreamOptions extends CallOptions {
  /** Carried by the Request itself as the first message (e.g. a server-streaming request). */
  initial?: Uint8Array;
  /** The client sends nothing after `initial`: the Request is flagged closed instead of open. */
  closeSend?: boolean;
}

/** The client's side of a stream. Iterating yields the server's messages until it ends the stream. */
export interface ClientStream extends AsyncIterable<Uint8Array> {
  /** Resolves once the socket can take more. */
  send(message: Uint8Array): Promise<void>;
  /** Tells the server the client sends nothing more (Data frame, flags 0x05, no data). */
  closeSend(): void;
  /**
   * Settles when the server has ended the stream: undefined after a closing Data frame, the
   * payload after a Response, rejected with the status of an error Response.
   */
  readonly done: Promise<Uint8Array | undefined>;
  /** Stops waiting for the stream locally; pending reads fail with Cancelled. */
  cancel(): void;
}

/** Whatever waits for frames on one stream id. */
interface Exchange {
  onFrame(frame: Frame): void;
  fail(err: RuntimeError): void;
}

const MAX_STREAM_ID = 2 ** 32 - 1;

export class TtrpcClient {
  private readonly decoder = new FrameDecoder();
  private readonly writer: FrameWriter;
  private readonly throttle: ReadThrottle;
  private readonly exchanges = new Map<number, Exchange>();
  private nextStreamId = 1;
  private closeReason: RuntimeError | undefined;
  private signalClosed: (reason: RuntimeError) => void = () => {};
  private readonly closedSignal = new Promise<RuntimeError>((resolve) => {
    this.signalClosed = resolve;
  });
  private lastSocketError: string | undefined;

  static async connect(path: string, options: ConnectOptions = {}): Promise<TtrpcClient> {
    const socket = net.createConnection(path);
    await new Promise<void>((resolve, reject) => {
      const timer =
        options.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              socket.destroy();
              const message = `connect ${path}: no connection after ${options.timeoutMs} ms`;
              reject(new RuntimeError(Code.DeadlineExceeded, message));
            }, options.timeoutMs);
      const onError = (err: Error): void => {
        clearTimeout(timer);
        reject(new RuntimeError(Code.Unavailable, `connect ${path}: ${err.message}`));
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve();
      });
    });
    return new TtrpcClient(socket);
  }

  /** Uses an already connected socket (or any byte stream that carries a connection). */
  constructor(private readonly socket: Duplex) {
    this.writer = new FrameWriter(socket);
    this.throttle = new ReadThrottle(socket);
    socket.on('data', (chunk: Buffer) => this.onChunk(chunk));
    socket.on('error', (err) => {
      this.lastSocketError = err.message;
    });
    socket.on('close', () => this.onClose());
  }

  get closed(): boolean {
    return this.closeReason !== undefined;
  }

  /** Settles, with why, once the connection has gone (closed by either side or broken). */
  get whenClosed(): Promise<RuntimeError> {
    return this.closedSignal;
  }

  /** One unary call; a non-OK status rejects with a RuntimeError carrying its code and message. */
  call(service: string, method: string, payload: Uint8Array, options: CallOptions = {}): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const exchange = new UnaryExchange(resolve, reject, (id) => this.exchanges.delete(id));
      try {
        exchange.attach(this.start(service, method, 0, payload, options, exchange), options);
      } catch (err) {
        reject(err);
      }
    });
  }

  /** Opens a stream; by default the client may send messages until closeSend(). */
  openStream(service: string, method: string, options: StreamOptions = {}): ClientStream {
    const flags = options.closeSend ? Flag.RemoteClosed : Flag.RemoteOpen;
    const stream = new StreamExchange(this.writer, this.throttle, options.closeSend === true, (id) => this.exchanges.delete(id));
    stream.attach(this.start(service, method, flags, options.initial ?? new Uint8Array(0), options, stream), options);
    return stream;
  }

  close(): void {
    this.closeReason ??= new RuntimeError(Code.Unavailable, 'ttrpc client closed');
    this.socket.destroy();
  }

  /** Sends a Request on the next stream id and routes that id's frames to `exchange`. */
  private start(service: string, method: string, flags: number, payload: Uint8Array, options: CallOptions, exchange: Exchange): number {
    if (this.closeReason) throw this.closeReason;
    if (options.signal?.aborted) throw cancelled();
    if (this.nextStreamId > MAX_STREAM_ID) throw new RuntimeError(Code.Unavailable, 'ttrpc stream ids exhausted');
    const request = create(RequestSchema, {
      service,
      method,
      payload,
      timeoutNano: timeoutNanos(options.timeoutMs),
      metadata: metadataToWire(options.metadata ?? {}),
    });
    const streamId = this.nextStreamId;
    // Throws (too large, connection gone) before the id counts as used.
    this.writer.write(streamId, FrameType.Request, flags, toBinary(RequestSchema, request));
    this.nextStreamId += 2;
    this.exchanges.set(streamId, exchange);
    return streamId;
  }

  private onChunk(chunk: Buffer): void {
    for (const item of this.decoder.push(chunk)) {
      if (item.kind === 'frame') {
        // Frames for ids nobody waits for (a call that timed out) are late answers: dropped.
        this.exchanges.get(item.frame.streamId)?.onFrame(item.frame);
      } else if (item.skipped.reason === 'oversized') {
        this.exchanges.get(item.skipped.streamId)?.fail(oversizedError(item.skipped.length));
      }
    }
  }

  private onClose(): void {
    const truncated = this.decoder.finish();
    const detail = truncated ?? this.lastSocketError;
    this.closeReason ??= new RuntimeError(Code.Unavailable, `ttrpc connection closed${detail ? `: ${detail}` : ''}`);
    const pending = [...this.exchanges.values()];
    this.exchanges.clear();
    for (const exchange of pending) exchange.fail(this.closeReason);
    this.signalClosed(this.closeReason);
  }
}

class UnaryExchange implements Exchange {
  private streamId = 0;
  private stopWatching: () => void = () => {};

  constructor(
    private readonly resolve: (payload: Uint8Array) => void,
    private readonly reject: (err: unknown) => void,
    private readonly release: (streamId: number) => void,
  ) {}

  attach(streamId: number, options: CallOptions): void {
    this.streamId = streamId;
    this.stopWatching = watchCall(options, (err) => this.fail(err));
  }

  onFrame(frame: Frame): void {
    this.end();
    if (frame.type !== FrameType.Response) {
      this.reject(new RuntimeError(Code.Internal, `ttrpc stream ${frame.streamId}: data frame for a unary call`));
      return;
    }
    try {
      this.resolve(readResponse(frame.payload));
    } catch (err) {
      this.reject(err);
    }
  }

  fail(err: RuntimeError): void {
    this.end();
    this.reject(err);
  }

  private end(): void {
    this.stopWatching();
    this.release(this.streamId);
  }
}

class StreamExchange implements ClientStream, Exchange {
  readonly done: Promise<Uint8Array | undefined>;
  private resolveDone!: (payload: Uint8Array | undefined) => void;
  private rejectDone!: (err: unknown) => void;
  private readonly inbound: InboundQueue<Uint8Array>;
  private streamId = 0;
  private finished = false;
  private failure: RuntimeError | undefined;
  private stopWatching: () => void = () => {};

  constructor(
    private readonly writer: FrameWriter,
    private readonly throttle: ReadThrottle,
    private localClosed: boolean,
    private readonly release: (streamId: number) => void,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    // Whoever only iterates learns the failure there; an unobserved `done` must not crash.
    this.done.catch(() => {});
    this.inbound = new InboundQueue<Uint8Array>(
      () => this.throttle.hold(this),
      () => this.throttle.release(this),
    );
  }

  attach(streamId: number, options: CallOptions): void {
    this.streamId = streamId;
    this.stopWatching = watchCall(options, (err) => this.fail(err));
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this.inbound[Symbol.asyncIterator]();
  }

  async send(message: Uint8Array): Promise<void> {
    if (this.failure) throw this.failure;
    if (this.localClosed || this.finished) throw failedPrecondition(`ttrpc stream ${this.streamId}: send after close`);
    await this.writer.send(this.streamId, FrameType.Data, 0, message);
  }

  closeSend(): void {
    if (this.localClosed || this.finished) return;
    this.localClosed = true;
    this.writer.write(this.streamId, FrameType.Data, Flag.RemoteClosed | Flag.NoData);
  }

  cancel(): void {
    this.fail(new RuntimeError(Code.Cancelled, `ttrpc stream ${this.streamId} cancelled`));
  }

  onFrame(frame: Frame): void {
    if (frame.type === FrameType.Response) {
      let payload: Uint8Array;
      try {
        payload = readResponse(frame.payload);
      } catch (err) {
        this.fail(err as RuntimeError);
        return;
      }
      this.complete(payload);
      return;
    }
    if ((frame.flags & Flag.NoData) === 0) this.inbound.push(frame.payload);
    if ((frame.flags & Flag.RemoteClosed) !== 0) this.complete(undefined);
  }

  fail(err: RuntimeError): void {
    if (!this.end()) return;
    this.failure = err;
    this.inbound.fail(err);
    this.rejectDone(err);
  }

  private complete(payload: Uint8Array | undefined): void {
    if (!this.end()) return;
    this.inbound.end();
    this.resolveDone(payload);
  }

  private end(): boolean {
    if (this.finished) return false;
    this.finished = true;
    this.stopWatching();
    this.throttle.release(this);
    this.release(this.streamId);
    return true;
  }
}

function cancelled(): RuntimeError {
  return new RuntimeError(Code.Cancelled, 'ttrpc call cancelled');
}

/** Fails a call at its deadline or when its signal aborts; returns the function that stops watching. */
function watchCall(options: CallOptions, fail: (err: RuntimeError) => void): () => void {
  const { timeoutMs, signal } = options;
  const onAbort = (): void => fail(cancelled());
  const timer =
    timeoutMs === undefined
      ? undefined
      : setTimeout(() => {
          fail(new RuntimeError(Code.DeadlineExceeded, `ttrpc deadline of ${timeoutMs} ms exceeded`));
        }, timeoutMs);
  signal?.addEventListener('abort', onAbort, { once: true });
  return () => {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  };
}
