// The server's side of one ttrpc connection: checks every frame against the protocol, runs
// handlers concurrently (containerd multiplexes its calls on one connection) and answers each
// stream exactly once.
//
// Reactions to a misbehaving peer follow containerd's Go server: a bad frame whose stream id
// can be answered (even or reused id, undecodable request, oversized or unknown frame, data on
// a stream that is not open) gets an error Response on that id and the connection goes on;
// a peer that hangs up, mid-frame or not, loses its connection and its calls are aborted.

import { fromBinary } from '@bufbuild/protobuf';
import type { Socket } from 'node:net';
import { RequestSchema, type Request } from '../../api/ttrpc/ttrpc_pb.js';
import { Code, RuntimeError, failedPrecondition, invalidArgument, unimplemented } from '../../core/errors.js';
import { encodeFailure, encodeSuccess, errorMessage, metadataFromWire, type Metadata } from './envelope.js';
import {
  Flag,
  FrameDecoder,
  FrameType,
  MAX_PAYLOAD_LENGTH,
  oversizedError,
  type Frame,
  type SkippedFrame,
} from './frame.js';
import { InboundQueue, ReadThrottle } from './inbound.js';
import type { ServerStream, StreamHandler, UnaryHandler } from './server.js';
import { FrameWriter } from './writer.js';

export type MethodHandler = { kind: 'unary'; handle: UnaryHandler } | { kind: 'stream'; handle: StreamHandler };

/** The part of a structured logger (pino's shape) the ttrpc server uses. */
export interface TtrpcLogger {
  warn(fields: Record<string, unknown>, message: string): void;
}

/** A unary call that a later process may answer: its stream id and its raw ttrpc.Request. */
export interface PendingCall {
  streamId: number;
  request: Uint8Array;
}

export interface ConnectionContext {
  lookup(service: string, method: string): MethodHandler | undefined;
  hasService(service: string): boolean;
  logger: TtrpcLogger | undefined;
  /** Whether a unary call may be answered by a later process (TtrpcServerOptions.resumable). */
  isResumable?(service: string, method: string): boolean;
  onResumableCall?(call: PendingCall): void;
  onResumableCallSettled?(call: PendingCall): void;
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
  /** Set for a call a later process may answer, as reported to the context. */
  resumable: PendingCall | undefined;

  constructor(
    readonly streamId: number,
    readonly metadata: Metadata,
  ) {}
}

export class ServerConnection {
  private readonly decoder = new FrameDecoder();
  private readonly writer: FrameWriter;
  private readonly throttle: ReadThrottle;
  private readonly calls = new Map<number, ActiveCall>();
  private lastStreamId = 0;

  constructor(
    private readonly socket: Socket,
    private readonly context: ConnectionContext,
  ) {
    this.writer = new FrameWriter(socket);
    this.throttle = new ReadThrottle(socket);
    socket.on('data', (chunk: Buffer) => this.onChunk(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('error', (err) => this.warn('ttrpc connection failed', { error: err.message }));
    socket.on('close', () => this.abortAll());
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onChunk(chunk: Buffer): void {
    for (const item of this.decoder.push(chunk)) {
      if (item.kind === 'frame') this.onFrame(item.frame);
      else this.onSkipped(item.skipped);
    }
  }

  private onEnd(): void {
    const truncated = this.decoder.finish();
    if (truncated) this.warn('ttrpc peer hung up mid-frame', { detail: truncated });
    // As containerd's server does: a peer that stops sending is gone, and so are its calls.
    this.socket.destroy();
  }

  private onSkipped(skipped: SkippedFrame): void {
    const error =
      skipped.reason === 'oversized'
        ? oversizedError(skipped.length)
        : invalidArgument(`unknown message type ${skipped.type}`);
    this.warn('ttrpc frame dropped', { stream: skipped.streamId, error: error.message });
    const call = this.calls.get(skipped.streamId);
    // A stream that lost a message cannot go on.
    if (call) this.failCall(call, error);
    else this.refuse(skipped.streamId, error);
  }

  private onFrame(frame: Frame): void {
    if (frame.streamId % 2 !== 1) {
      this.violation(frame.streamId, `stream id ${frame.streamId} must be odd for client-initiated streams`);
      return;
    }
    switch (frame.type) {
      case FrameType.Request:
        this.onRequest(frame);
        return;
      case FrameType.Data:
        this.onData(frame);
        return;
      case FrameType.Response:
        this.violation(frame.streamId, 'a client may not send response frames');
        return;
    }
  }

  /**
   * Runs again the calls an earlier process took from this connection and did not answer (as
   * its context's onResumableCall reported them): they are answered on their stream ids, and
   * the client's next request must come after the highest of them.
   */
  resume(calls: readonly PendingCall[]): void {
    for (const call of [...calls].sort((a, b) => a.streamId - b.streamId)) {
      if (call.streamId % 2 !== 1 || call.streamId <= this.lastStreamId) continue;
      this.lastStreamId = call.streamId;
      this.startCall(call.streamId, call.request, 0, true);
    }
  }

  private onRequest(frame: Frame): void {
    const streamId = frame.streamId;
    if (streamId <= this.lastStreamId) {
      this.violation(streamId, `stream id ${streamId} must be greater than the previous one (${this.lastStreamId})`);
      return;
    }
    this.lastStreamId = streamId;
    this.startCall(streamId, frame.payload, frame.flags, false);
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
    const call = this.open(streamId, request);
    if (!call) return;
    if (method.kind === 'stream') {
      this.runStream(call, method.handle, request.payload, flags);
      return;
    }
    if (this.context.isResumable?.(request.service, request.method)) {
      call.resumable = { streamId, request: payload };
      // A resumed call was reported by the process that first took it.
      if (!resumed) this.context.onResumableCall?.(call.resumable);
    }
    this.runUnary(call, method.handle, request.payload);
  }

  private onData(frame: Frame): void {
    const call = this.calls.get(frame.streamId);
    if (!call && isLateClose(frame, this.lastStreamId)) return;
    if (!call?.inbound) {
      this.violation(frame.streamId, `stream ${frame.streamId} is not open for data`);
      return;
    }
    if (call.remoteClosed) {
      this.warn('ttrpc data after close', { stream: frame.streamId });
      this.failCall(call, invalidArgument(`stream ${frame.streamId}: data after the client closed its side`));
      return;
    }
    if ((frame.flags & Flag.NoData) === 0) call.inbound.push(frame.payload);
    if ((frame.flags & Flag.RemoteClosed) !== 0) {
      call.remoteClosed = true;
      call.inbound.end();
    }
  }

  /** Tracks a new call and arms its deadline; undefined if the deadline had passed already. */
  private open(streamId: number, request: Request): ActiveCall | undefined {
    const call = new ActiveCall(streamId, metadataFromWire(request.metadata));
    this.calls.set(streamId, call);
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
    invoke(() => handle({ payload, metadata, signal: controller.signal })).then(
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

  private abortAll(): void {
    const error = new RuntimeError(Code.Cancelled, 'ttrpc connection closed');
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
    clearTimeout(call.timer);
    this.throttle.release(call);
    if (call.resumable) this.context.onResumableCallSettled?.(call.resumable);
    return true;
  }

  private violation(streamId: number, message: string): void {
    this.warn('ttrpc protocol violation', { stream: streamId, error: message });
    this.refuse(streamId, invalidArgument(message));
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

/**
 * An empty close (Data, flags remote-closed + no-data) for a stream the server has finished
 * already: a client closes its side once it has read the server's end (containerd does for the
 * Streaming service). Nothing is left to answer; an error Response would only be logged by the
 * client as a message on an inactive stream.
 */
function isLateClose(frame: Frame, lastStreamId: number): boolean {
  const closeFlags = Flag.RemoteClosed | Flag.NoData;
  return frame.streamId <= lastStreamId && (frame.flags & closeFlags) === closeFlags && frame.payload.length === 0;
}

/** Runs a handler so that a synchronous throw becomes a rejection like any other failure. */
async function invoke<T>(handler: () => Promise<T>): Promise<T> {
  return handler();
}
