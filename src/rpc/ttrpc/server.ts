// A ttrpc server: serves registered services on a unix socket (or on sockets handed to it, or
// on any byte stream, such as the guest agent's virtio-serial port), one ServerConnection per peer. Service and method names are matched exactly; an unknown one
// is answered Unimplemented and the connection stays usable.
//
// A process that must hand its sockets over to a later process (kuasard keeps them in its fd
// keeper so that containerd's connections survive a restart) learns of every socket the server
// opens through onListening/onAccepted, and of the pending calls the later process must answer
// through onPendingCall; the later process serves them again through adoptListener and
// adoptConnection. The server itself knows nothing of who keeps what.

import type { Stats } from 'node:fs';
import { lstat, rm } from 'node:fs/promises';
import net from 'node:net';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { alreadyExists, failedPrecondition, invalidArgument } from '../../base/errors.js';
import { RateLimitedLog } from '../../base/rate-limited-log.js';
import type { ServiceHandlers, StreamHandler, UnaryHandler } from './handlers.js';
import { ServerConnection, type MethodHandler, type PendingCall, type TtrpcLogger } from './server-connection.js';

export type { Metadata } from './envelope.js';
export type { CallContext, ServerStream, ServiceHandlers, StreamHandler, UnaryCall, UnaryHandler } from './handlers.js';
export type { PendingCall, TtrpcLogger } from './server-connection.js';

interface ServerOptions {
  /**
   * Told about peers that break the protocol, at most a few times per interval for each kind of
   * trouble (the rest is counted); nothing is logged without it.
   */
  logger?: TtrpcLogger;
  /**
   * Unary calls that may wait for what later calls on the same connection cause, such as
   * containerd's Task.Wait. They count against a bound of their own (as streams do), so that
   * many of them never keep a connection from reading the calls they wait for.
   */
  longCalls?: (service: string, method: string) => boolean;
  /** Called once listen() has made the listening socket. */
  onListening?: (listener: net.Server) => void;
  /** Called with each connection the listener accepts, before anything is read from it. */
  onAccepted?: (socket: net.Socket) => void;
  /**
   * Unary calls that a later process may run again if this one goes away first: idempotent calls
   * that wait long, such as containerd's Task.Wait.
   */
  resumable?: (service: string, method: string) => boolean;
  /**
   * Told of every unary call as it starts (a resumable one with its raw request) and again once
   * it is answered or given up. A process that hands its connections over keeps the unsettled
   * ones, and its successor passes them to adoptConnection.
   */
  onPendingCall?: (socket: net.Socket, call: PendingCall) => void;
  onPendingCallSettled?: (socket: net.Socket, call: PendingCall) => void;
}

/** `scope` is given to every handler with its call (CallContext.scope); a server with a Scope type must have one. */
export type TtrpcServerOptions<Scope = undefined> = ServerOptions & (undefined extends Scope ? { scope?: Scope } : { scope: Scope });

/**
 * Method tables built once per set of handlers: servers that serve the same handlers (one per
 * sandbox in kuasard) share them.
 */
const methodTables = new WeakMap<ServiceHandlers<never>, Map<string, MethodHandler>>();

function methodTable(handlers: ServiceHandlers<never>): Map<string, MethodHandler> {
  let methods = methodTables.get(handlers);
  if (methods) return methods;
  methods = new Map<string, MethodHandler>();
  // The handlers take the Scope of the servers they are registered with, and a server passes its own.
  for (const [name, handle] of Object.entries(handlers.unary ?? {})) methods.set(name, { kind: 'unary', handle: handle as UnaryHandler });
  for (const [name, handle] of Object.entries(handlers.streams ?? {})) {
    if (methods.has(name)) throw invalidArgument(`ttrpc method ${name} is both unary and streaming`);
    methods.set(name, { kind: 'stream', handle: handle as StreamHandler });
  }
  methodTables.set(handlers, methods);
  return methods;
}

/** Mode of the listening socket: only the owner (root for the daemon) may connect. */
const SOCKET_MODE_UMASK = 0o177;

export class TtrpcServer<Scope = undefined> {
  private readonly services = new Map<string, Map<string, MethodHandler>>();
  private readonly connections = new Set<ServerConnection>();
  private listener: net.Server | undefined;
  private socketPath: string | undefined;
  private closed = false;
  /** Shared by every connection: a peer that reconnects after each violation is still limited. */
  private readonly log: RateLimitedLog | undefined;

  // Typed without Scope: a server of any scope can go where a TtrpcServer is asked for (its
  // handlers alone depend on the scope, and they are given the one they were registered for).
  private readonly options: ServerOptions & { scope?: unknown };

  constructor(options: TtrpcServerOptions<Scope> = {} as TtrpcServerOptions<Scope>) {
    this.options = options;
    this.log = options.logger && new RateLimitedLog(options.logger);
  }

  /**
   * Serves `handlers` under each of `names` (containerd.task.v2.Task and v3 share one set).
   * A name may be registered once.
   */
  register(names: string | readonly string[], handlers: ServiceHandlers<Scope>): void {
    const methods = methodTable(handlers);
    for (const name of typeof names === 'string' ? [names] : names) {
      if (this.services.has(name)) throw alreadyExists(`ttrpc service ${name}`);
      this.services.set(name, methods);
    }
  }

  /**
   * Listens on a unix socket created with mode 0600. A stale socket file (nobody accepting on
   * it, as after a restart) is replaced; a live one or any other file is an error.
   */
  async listen(path: string): Promise<void> {
    if (this.closed) throw failedPrecondition('ttrpc server is closed');
    if (this.listener) throw failedPrecondition(`ttrpc server already listens on ${this.socketPath}`);
    await removeStaleSocket(path);
    const listener = this.createListener();
    // The socket file gets its mode when bind() runs, which net.Server.listen() does
    // synchronously for a path; a tight umask around that call leaves no moment at which the
    // file is open to others (a chmod afterwards would race with early connects).
    const previousUmask = process.umask(SOCKET_MODE_UMASK);
    try {
      listener.listen(path);
    } finally {
      process.umask(previousUmask);
    }
    await once(listener, 'listening');
    this.listener = listener;
    this.socketPath = path;
    this.options.onListening?.(listener);
  }

  /**
   * Serves a listening unix socket that is bound to `path` already (one an earlier process
   * handed over): connections queued in its backlog are accepted now. The server owns `fd` from
   * here on, and close() removes `path` as it does after listen().
   */
  async adoptListener(fd: number, path: string): Promise<void> {
    if (this.closed) throw failedPrecondition('ttrpc server is closed');
    if (this.listener) throw failedPrecondition(`ttrpc server already listens on ${this.socketPath}`);
    const listener = this.createListener();
    listener.listen({ fd });
    await once(listener, 'listening');
    this.listener = listener;
    this.socketPath = path;
  }

  /**
   * Serves a connection by its descriptor (one an earlier process handed over) and returns its
   * socket, which owns `fd` from here on. `pending` are the calls the earlier process took from
   * it and did not answer: resumable ones run again, the others are answered Unavailable, on
   * their stream ids. Stream ids go on from wherever the client is (any odd id may come first).
   */
  adoptConnection(fd: number, pending: readonly PendingCall[] = []): net.Socket {
    const socket = new net.Socket({ fd, readable: true, writable: true });
    this.serve(socket, socket)?.adopt(pending);
    return socket;
  }

  private createListener(): net.Server {
    return net.createServer((socket) => {
      this.options.onAccepted?.(socket);
      this.serveConnection(socket);
    });
  }

  /** Serves a connection accepted elsewhere. */
  serveConnection(socket: net.Socket): void {
    this.serve(socket, socket);
  }

  /**
   * Serves one connection carried by a byte stream that is not a socket (a virtio-serial port).
   * It cannot be handed to another process: onPendingCall and its peers hear nothing of it.
   * The server destroys the stream on close(); whoever made it learns of its end by 'close'.
   */
  serveStream(stream: Duplex): void {
    this.serve(stream, undefined);
  }

  private serve(stream: Duplex, socket: net.Socket | undefined): ServerConnection | undefined {
    if (this.closed) {
      stream.destroy();
      return undefined;
    }
    const { longCalls, resumable, onPendingCall, onPendingCallSettled } = this.options;
    const connection = new ServerConnection(stream, {
      scope: this.options.scope,
      lookup: (service, method) => this.services.get(service)?.get(method),
      hasService: (service) => this.services.has(service),
      logger: this.log,
      isLongCall: longCalls,
      isResumable: resumable,
      onPendingCall: socket && onPendingCall && ((call) => onPendingCall(socket, call)),
      onPendingCallSettled: socket && onPendingCallSettled && ((call) => onPendingCallSettled(socket, call)),
    });
    this.connections.add(connection);
    stream.once('close', () => this.connections.delete(connection));
    return connection;
  }

  /** Stops listening, drops every connection (aborting their calls) and removes the socket file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const listener = this.listener;
    const listenerClosed = listener ? new Promise<void>((resolve) => listener.close(() => resolve())) : undefined;
    for (const connection of this.connections) connection.destroy();
    this.connections.clear();
    await listenerClosed;
    if (this.socketPath) await rm(this.socketPath, { force: true });
  }
}

async function removeStaleSocket(path: string): Promise<void> {
  let stats: Stats;
  try {
    stats = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!stats.isSocket()) throw alreadyExists(`${path} (not a socket)`);
  if (await acceptsConnections(path)) throw alreadyExists(`ttrpc server on ${path}`);
  await rm(path, { force: true });
}

/** Whether someone accepts on the socket; only a refused connect proves the file stale. */
function acceptsConnections(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = net.createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED') resolve(false);
      else reject(err);
    });
  });
}
