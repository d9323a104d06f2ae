// What a ttrpc service's handlers are given and return: the contract between the server, which
// runs calls, and the code that answers them.
import type { Metadata } from './envelope.js';

/**
 * What every handler learns about its call besides the messages. `scope` is what the server
 * that took the call serves (TtrpcServerOptions.scope; kuasard: the sandbox whose task socket it
 * is), so that one set of handlers can serve many servers.
 */
export interface CallContext<Scope = unknown> {
  metadata: Metadata;
  /** Aborted when the deadline (timeout_nano) passes or the connection closes. */
  signal: AbortSignal;
  scope: Scope;
}

export interface UnaryCall<Scope = unknown> extends CallContext<Scope> {
  payload: Uint8Array;
}

export type UnaryHandler<Scope = unknown> = (call: UnaryCall<Scope>) => Promise<Uint8Array>;

/**
 * The server's side of a streaming call. Iterating yields the client's messages until it
 * closes its side. The stream ends when the handler returns (or calls close()): with a Data
 * frame flagged closed, or with a Response carrying the returned payload; a thrown error ends
 * it with a Response carrying the error status.
 */
export interface ServerStream<Scope = unknown> extends CallContext<Scope>, AsyncIterable<Uint8Array> {
  /** Resolves once the socket can take more, so a fast sender follows a slow reader. */
  send(message: Uint8Array): Promise<void>;
  /** Ends the server's side now (Data frame flagged closed, no data). */
  close(): void;
}

export type StreamHandler<Scope = unknown> = (stream: ServerStream<Scope>) => Promise<Uint8Array | void>;

/** One service's methods by wire name (e.g. "Create"), as containerd/ttrpc's ServiceDesc splits them. */
export interface ServiceHandlers<Scope = unknown> {
  unary?: Record<string, UnaryHandler<Scope>>;
  streams?: Record<string, StreamHandler<Scope>>;
}
