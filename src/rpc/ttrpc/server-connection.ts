// The server's side of one ttrpc connection: checks every frame against the protocol, runs
// handlers concurrently (containerd multiplexes its calls on one connection) and answers each
// stream exactly once.
//
// A peer that breaks the protocol loses its connection at the first violation: a Request with
// an even or non-increasing stream id, an undecodable ttrpc.Request envelope, a Response frame,
// a frame of unknown type, Data on a stream never opened or on a unary call. It gets one error
// Response naming the violation on the offending stream id, its calls are aborted, and nothing
// more is read from it. Answering and going on (as containerd's Go server does) let one client
// make the daemon read and log millions of bad frames. Anything a well-behaved client may send
// keeps the connection: an unknown service or method is answered Unimplemented, a request whose
// payload the handler cannot decode InvalidArgument (by the handler), a frame over 4 MiB
// ResourceExhausted on its stream (its bytes are skipped, never buffered), and Data on a stream
// the server has finished already is dropped (it crossed the server's end on the wire).
// A peer that hangs up, mid-frame or not, loses its connection and its calls are aborted.
//
// Work per connection is bounded: reading stops while MAX_SHORT_CALLS short calls or
// MAX_LONG_CALLS long ones run, while replies wait unsent in the socket's buffer (the peer does
// not read them; only the answers of calls already running are added after that), or while a
// stream holds more unread messages than its high-water mark; it
// resumes as soon as that drains. Pausing only delays the peer's next requests (they wait in the
// kernel's socket buffer), it never fails them. Long calls are counted apart because they
// wait for what other calls on the same connection cause: containerd keeps one Task.Wait per
// process and, for streaming stdio, up to three Streaming streams per process open on the pod's
// single connection, and none of them ends until a later Kill, Start or Delete is read. With
// short calls alone bounded, those can never starve each other: short calls end by themselves.
import { fromBinary } from '@bufbuild/protobuf';
import type { Duplex } from 'node:stream';
import { RequestSchema, type Request } from '../../api/ttrpc/ttrpc_pb.js';
import { Code, RuntimeError, failedPrecondition, invalidArgument, unavailable, unimplemented } from '../../base/errors.js';
import type { WarnLogger } from '../../base/rate-limited-log.js';
import { encodeFailure, encodeSuccess, errorMessage, metadataFromWire, type Metadata } from './envelope.js';
import { Flag, FrameDecoder, FrameType, MAX_PAYLOAD_LENGTH, oversizedError, type DecodedItem } from './frame.js';
import { InboundQueue, ReadThrottle } from './inbound.js';
import type { ServerStream, StreamHandler, UnaryHandler } from './handlers.js';
import { FrameWriter } from './writer.js';

export type MethodHandler = { kind: 'unary'; handle: UnaryHandler } | { kind: 'stream'; handle: StreamHandler };

/** The part of a structured logger (pino's shape) the ttrpc server uses. */
export type TtrpcLogger = WarnLogger;

/**
 * Short calls one connection may run at once. containerd's calls on a pod are few at a time
 * (CRI serialises per container); a client that pipelines more simply waits.
 */
export const MAX_SHORT_CALLS = 128;

/**
 * Long calls (streams, and unary calls the context calls long, such as Task.Wait) one
 * connection may hold open: a Wait and three stdio streams for each of 1024 processes of one
 * pod, far more than any pod runs, yet a bound on what a pipelining client can pin.
 */
export const MAX_LONG_CALLS = 4096;

/** How long a connection ended for a violation may take to flush its last answer. */
const CLOSE_GRACE_MS = 5_000;

/**
 * A unary call not answered yet, as a later process taking the connection over needs it. A
 * resumable call carries its raw ttrpc.Request and is run again; any other is answered
 * Unavailable, since whether it took effect is unknown (the client may look and retry).
 */
export interface PendingCall {
  streamId: number;
  request?: Uint8Array;
}

export interface ConnectionContext {
  /** Given to every handler with its call (CallContext.scope). */
  scope: unknown;
  lookup(service: string, method: string): MethodHandler | undefined;
  hasService(service: string): boolean;
  /** Already rate-limited: a misbehaving peer can make it warn at will. */
  logger: TtrpcLogger | undefined;
  /** Whether a unary call may wait for other calls (TtrpcServerOptions.longCalls). */
  isLongCall?(service: string, method: string): boolean;
  /** Whether a unary call may be run again by a later process (TtrpcServerOptions.resumable). */
  isResumable?(service: string, method: string): boolean;
  onPendingCall?(call: PendingCall): void;
  onPendingCallSettled?(call: PendingCall): void;
}

/** setTimeout's longest delay; a deadline further away than this is as good as none. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A call that has not been answered yet. */
class ActiveCall {
  readonly controller = new AbortController();
  timer: NodeJS.Timeout | undefined;
  /** Streaming calls only: the client's messages not yet read by the handler. */
  inbound: InboundQueue<Uint8Array> | undefined;
  /** The client said it sends nothing more on this stream. */
  remoteClosed = false;
  /** Set for a unary call, as reported to the context. */
  pending: PendingCall | undefined;

  constructor(
    readonly streamId: number,
    readonly metadata: Metadata,
    /** Which in-flight bound it counts against. */
    readonly load: CallLoad,
  ) {}
}

/** The calls of one class running on a connection, and the read pause when there are too many. */
class CallLoad {
  private running = 0;

  constructor(
    private readonly limit: number,
    private readonly throttle: ReadThrottle,
  ) {}

  add(): void {
    if (++this.running === this.limit) this.throttle.hold(this);
  }

  remove(): void {
    if (this.running-- === this.limit) this.throttle.release(this);
  }
}

export class ServerConnection {
  private readonly decoder = new FrameDecoder();
  private readonly writer: FrameWriter;
  private readonly throttle: ReadThrottle;
  private readonly shortCalls: CallLoad;
  private readonly longCalls: CallLoad;
  private readonly calls = new Map<number, ActiveCall>();
  private lastStreamId = 0;
  /**
   * Frames decoded from chunks already read but not handled yet, because the connection was
   * paused halfway through a chunk (one 64 KiB chunk holds thousands of small requests).
   */
  private backlog: DecodedItem[] = [];
  private backlogIndex = 0;
  private paused = false;
  private handling = false;
  /** Set once a violation ended the connection: nothing more is read or answered. */
  private hungUp = false;
  /**
   * False for a connection an earlier process served: streams it opened may still get Data,
   * so Data on a stream this side never saw is not a violation there.
   */
  private knowsEveryStream = true;

  constructor(
    // A unix socket as a rule; any byte stream will do (the guest agent's virtio-serial port).
    private readonly socket: Duplex,
    private readonly context: ConnectionContext,
  ) {
    this.throttle = new ReadThrottle({ pause: () => this.pause(), resume: () => this.resume() });
    this.shortCalls = new CallLoad(MAX_SHORT_CALLS, this.throttle);
    this.longCalls = new CallLoad(MAX_LONG_CALLS, this.throttle);
    // Replies the peer does not read stay in the socket's buffer: read nothing more until it drains.
    this.writer = new FrameWriter(socket, {
      full: () => this.throttle.hold(this.writer),
      room: () => this.throttle.release(this.writer),
    });
    socket.on('data', (chunk: Buffer) => this.onChunk(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', (err) => this.warn('ttrpc connection failed', { error: err.message }));
    socket.on('close', () => this.onClose());
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onChunk(chunk: Buffer): void {
    const items = this.decoder.push(chunk);
    if (this.backlogIndex < this.backlog.length) this.backlog = this.backlog.slice(this.backlogIndex).concat(items);
    else this.backlog = items;
    this.backlogIndex = 0;
    this.handleBacklog();
  }

  private handleBacklog(): void {
    // A call settled by the handling below may resume the connection: the loop goes on then.
    if (this.handling) return;
    this.handling = true;
    try {
      while (!this.paused && !this.hungUp && this.backlogIndex < this.backlog.length) {
        this.onItem(this.backlog[this.backlogIndex++]!);
      }
    } finally {
      this.handling = false;
    }
    if (this.backlogIndex >= this.backlog.length || this.hungUp) {
      this.backlog = [];
      this.backlogIndex = 0;
    }
  }

  private pause(): void {
    this.paused = true;
    this.socket.pause();
  }

  private resume(): void {
    this.paused = false;
    this.handleBacklog();
    if (!this.paused && !this.hungUp) this.socket.resume();
  }

  private onEnd(): void {
    const truncated = this.decoder.finish();
    if (truncated) this.warn('ttrpc peer hung up mid-frame', { detail: truncated });
    // As containerd's server does: a peer that stops sending is gone, and so are its calls.
    this.socket.destroy();
  }

  private onClose(): void {
    // What the peer sent and nobody will handle is garbage now (and must not start calls when
    // aborting those below makes room).
    this.hungUp = true;
    this.backlog = [];
    this.backlogIndex = 0;
    this.abortAll(new RuntimeError(Code.Cancelled, 'ttrpc connection closed'));
  }

  private onItem(item: DecodedItem): void {
    if (item.kind === 'skipped' && item.skipped.reason === 'unknown-type') {
      this.violation(item.skipped.streamId, `unknown message type ${item.skipped.type}`);
      return;
    }
    // Oversized: its bytes were skipped as they came, the frame still counts for its stream.
    const { streamId, type, flags } = item.kind === 'frame' ? item.frame : item.skipped;
    const content = item.kind === 'frame' ? item.frame.payload : oversizedError(item.skipped.length);
    if (streamId % 2 !== 1) {
      this.violation(streamId, `stream id ${streamId} must be odd for client-initiated streams`);
      return;
    }
    switch (type) {
      case FrameType.Request:
        this.onRequest(streamId, flags, content);
        return;
      case FrameType.Data:
        this.onData(streamId, flags, content);
        return;
      default:
        this.violation(streamId, 'a client may not send response frames');
        return;
    }
  }

  /**
   * Takes the connection over from an earlier process, with the calls it took from this
   * connection and did not answer (as its context's onPendingCall reported them): resumable ones
   * run again, the others are answered Unavailable; each on its own stream id. The client's next
   * request must come after the highest of them.
   */
  adopt(calls: readonly PendingCall[]): void {
    this.knowsEveryStream = false;
    for (const call of [...calls].sort((a, b) => a.streamId - b.streamId)) {
      if (call.streamId % 2 !== 1 || call.streamId <= this.lastStreamId) continue;
      this.lastStreamId = call.streamId;
      if (call.request) this.startCall(call.streamId, call.request, 0, true);
      else
        this.refuse(
          call.streamId,
          unavailable(`stream ${call.streamId}: the server restarted while it served this call; whether it took effect is unknown`),
        );
    }
  }

  private onRequest(streamId: number, flags: number, content: Uint8Array | RuntimeError): void {
    if (streamId <= this.lastStreamId) {
      this.violation(streamId, `stream id ${streamId} must be greater than the previous one (${this.lastStreamId})`);
      return;
    }
    this.lastStreamId = streamId;
    if (content instanceof RuntimeError) this.refuse(streamId, content);
    else this.startCall(streamId, content, flags, false);
  }

  private startCall(streamId: number, payload: Uint8Array, flags: number, resumed: boolean): void {
    let request: Request;
    try {
      request = fromBinary(RequestSchema, payload);
    } catch (err) {
      this.violation(streamId, `invalid request: ${errorMessage(err)}`);
      return;
    }
    const method = this.context.lookup(request.service, request.method);
    if (!method) {
      const what = this.context.hasService(request.service)
        ? `unknown method ${request.service}/${request.method}`
        : `unknown service ${request.service}`;
      this.refuse(streamId, unimplemented(what));
      return;
    }
    const long = method.kind === 'stream' || this.context.isLongCall?.(request.service, request.method) === true;
    // The payload is a view into the chunk read from the socket (8 KiB or more), and a decoded
    // request's bytes are views into the payload. A long call (a Wait, for its container's whole
    // life) keeps its request: it gets one decoded from a copy, so as not to hold the chunk.
    if (long) {
      payload = new Uint8Array(payload);
      request = fromBinary(RequestSchema, payload);
    }
    const call = this.open(streamId, request, long ? this.longCalls : this.shortCalls);
    if (!call) return;
    if (method.kind === 'stream') {
      this.runStream(call, method.handle, request.payload, flags);
      return;
    }
    call.pending = this.context.isResumable?.(request.service, request.method) ? { streamId, request: payload } : { streamId };
    // A resumed call was reported by the process that first took it.
    if (!resumed) this.context.onPendingCall?.(call.pending);
    this.runUnary(call, method.handle, request.payload);
  }

  private onData(streamId: number, flags: number, content: Uint8Array | RuntimeError): void {
    const call = this.calls.get(streamId);
    if (!call) {
      // A stream this side opened and finished: the client's Data crossed the server's end
      // (containerd closes its side of a Streaming stream once it has read the end).
      if (streamId <= this.lastStreamId || !this.knowsEveryStream) return;
      this.violation(streamId, `stream ${streamId} is not open for data`);
      return;
    }
    if (!call.inbound) {
      this.violation(streamId, `stream ${streamId} is a unary call: it takes no data`);
      return;
    }
    if (content instanceof RuntimeError) {
      // A stream that lost a message cannot go on; the connection can.
      this.failCall(call, content);
      return;
    }
    if (call.remoteClosed) {
      this.warn('ttrpc data after close', { stream: streamId });
      this.failCall(call, invalidArgument(`stream ${streamId}: data after the client closed its side`));
      return;
    }
    if ((flags & Flag.NoData) === 0) call.inbound.push(content);
    if ((flags & Flag.RemoteClosed) !== 0) {
      call.remoteClosed = true;
      call.inbound.end();
    }
  }

  /** Tracks a new call and arms its deadline; undefined if the deadline had passed already. */
  private open(streamId: number, request: Request, load: CallLoad): ActiveCall | undefined {
    const call = new ActiveCall(streamId, metadataFromWire(request.metadata), load);
    this.calls.set(streamId, call);
    load.add();
    if (request.timeoutNano !== 0n) {
      const timeoutMs = Number(request.timeoutNano) / 1e6;
      if (timeoutMs <= 0) {
        this.expire(call);
        return undefined;
      }
      if (timeoutMs <= MAX_TIMER_MS) call.timer = setTimeout(() => this.expire(call), timeoutMs);
    }
    return call;
  }

  private runUnary(call: ActiveCall, handle: UnaryHandler, payload: Uint8Array): void {
    const { metadata, controller } = call;
    invoke(() => handle({ payload, metadata, signal: controller.signal, scope: this.context.scope })).then(
      (result) => this.respond(call, result),
      (err: unknown) => this.respondError(call, err),
    );
  }

  private runStream(call: ActiveCall, handle: StreamHandler, payload: Uint8Array, flags: number): void {
    const inbound = new InboundQueue<Uint8Array>(
      () => this.throttle.hold(call),
      () => this.throttle.release(call),
    );
    call.inbound = inbound;
    const clientStreams = (flags & Flag.RemoteOpen) !== 0;
    // The request carries the first message unless the client only opened the stream (as
    // containerd does for Streaming/Stream); without "remote open" it is also the last.
    if (payload.length > 0 || !clientStreams) inbound.push(payload);
    if (!clientStreams) {
      call.remoteClosed = true;
      inbound.end();
    }
    const stream: ServerStream = {
      metadata: call.metadata,
      signal: call.controller.signal,
      scope: this.context.scope,
      [Symbol.asyncIterator]: () => inbound[Symbol.asyncIterator](),
      send: (message) => this.sendData(call, message),
      close: () => this.closeStream(call),
    };
    invoke(() => handle(stream)).then(
      (result) => (result instanceof Uint8Array ? this.respond(call, result) : this.closeStream(call)),
      (err: unknown) => this.respondError(call, err),
    );
  }

  private async sendData(call: ActiveCall, message: Uint8Array): Promise<void> {
    if (!this.isActive(call)) {
      const { signal } = call.controller;
      throw signal.aborted ? signal.reason : failedPrecondition(`ttrpc stream ${call.streamId} is closed`);
    }
    await this.writer.send(call.streamId, FrameType.Data, 0, message);
  }

  private closeStream(call: ActiveCall): void {
    if (!this.settle(call)) return;
    this.writeFrame(call.streamId, FrameType.Data, Flag.RemoteClosed | Flag.NoData);
  }

  private respond(call: ActiveCall, payload: Uint8Array): void {
    if (payload.length > MAX_PAYLOAD_LENGTH) {
      this.respondError(call, oversizedError(payload.length));
      return;
    }
    if (this.settle(call)) this.writeFrame(call.streamId, FrameType.Response, 0, encodeSuccess(payload));
  }

  private respondError(call: ActiveCall, err: unknown): void {
    if (this.settle(call)) this.refuse(call.streamId, err);
  }

  private expire(call: ActiveCall): void {
    this.failCall(call, new RuntimeError(Code.DeadlineExceeded, `stream ${call.streamId}: deadline exceeded`));
  }

  /** Ends a call from outside its handler: the handler sees its signal aborted. */
  private failCall(call: ActiveCall, error: RuntimeError): void {
    if (!this.settle(call)) return;
    call.controller.abort(error);
    call.inbound?.fail(error);
    this.refuse(call.streamId, error);
  }

  private abortAll(error: RuntimeError): void {
    for (const call of [...this.calls.values()]) {
      this.settle(call);
      call.controller.abort(error);
      call.inbound?.fail(error);
    }
  }

  private isActive(call: ActiveCall): boolean {
    return this.calls.get(call.streamId) === call;
  }

  /** Marks a call answered; false if it was answered already (a late result is dropped). */
  private settle(call: ActiveCall): boolean {
    if (!this.isActive(call)) return false;
    this.calls.delete(call.streamId);
    call.load.remove();
    clearTimeout(call.timer);
    this.throttle.release(call);
    if (call.pending) this.context.onPendingCallSettled?.(call.pending);
    return true;
  }

  /** Ends the connection: one answer saying why, then nothing more is read or answered. */
  private violation(streamId: number, message: string): void {
    this.warn('ttrpc protocol violation: connection closed', { stream: streamId, error: message });
    this.refuse(streamId, invalidArgument(message));
    this.hungUp = true;
    this.socket.pause();
    this.abortAll(new RuntimeError(Code.Cancelled, 'ttrpc connection closed after a protocol violation'));
    // The answer goes out if the peer reads it; one that reads nothing gets closed all the same.
    const grace = setTimeout(() => this.socket.destroy(), CLOSE_GRACE_MS);
    this.socket.once('close', () => clearTimeout(grace));
    this.socket.once('finish', () => this.socket.destroy());
    this.socket.end();
  }

  /** An error Response on a stream id, whether or not a call runs on it. */
  private refuse(streamId: number, err: unknown): void {
    this.writeFrame(streamId, FrameType.Response, 0, encodeFailure(err));
  }

  private writeFrame(streamId: number, type: FrameType, flags: number, payload?: Uint8Array): void {
    // Once the socket is gone there is nobody left to answer.
    if (this.writer.open) this.writer.write(streamId, type, flags, payload);
  }

  private warn(message: string, fields: Record<string, unknown>): void {
    this.context.logger?.warn(fields, message);
  }
}

/** Runs a handler so that a synchronous throw becomes a rejection like any other failure. */
async function invoke<T>(handler: () => Promise<T>): Promise<T> {
  return handler();
}
