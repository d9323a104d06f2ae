// What a ttrpc service's handlers are given and return: the contract between the server, which
// runs calls, and the code that answers them.
import type { Metadata } from './envelope.js';

/** What every handler learns about its call besides the messages. */
export interface CallContext {
  metadata: Metadata;
  /** Aborted when the deadline (timeout_nano) passes or the connection closes. */
  signal: AbortSignal;
}

export interface UnaryCall extends CallContext {
  payload: Uint8Array;
}

export type UnaryHandler = (call: UnaryCall) => Promise<Uint8Array>;

/**
 * The server's side of a streaming call. Iterating yields the client's messages until it
 * closes its side. The stream ends when the handler returns (or calls close()): with a Data
 * frame flagged closed, or with a Response carrying the returned payload; a thrown error ends
 * it with a Response carrying the error status.
 */
export interface ServerStream extends CallContext, AsyncIterable<Uint8Array> {
  /** Resolves once the socket can take more, so a fast sender follows a slow reader. */
  send(message: Uint8Array): Promise<void>;
  /** Ends the server's side now (Data frame flagged closed, no data). */
  close(): void;
}

export type StreamHandler = (stream: ServerStream) => Promise<Uint8Array | void>;

/** One service's methods by wire name (e.g. "Create"), as containerd/ttrpc's ServiceDesc splits them. */
export interface ServiceHandlers {
  unary?: Record<string, UnaryHandler>;
  streams?: Record<string, StreamHandler>;
}
