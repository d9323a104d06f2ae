// Task sockets that outlive kuasard. containerd keeps one ttrpc connection per task open to the
// sandbox's task socket and never reconnects: when that connection breaks, its pending Wait
// fails and CRI records the container as exited (status 255). So every task-socket listener and
// every connection accepted on one is also held by the fd keeper (linux/fd-keeper.ts): when
// kuasard dies, nothing that containerd sees closes (pending calls wait, new connects queue in
// the listen backlog), and the next run serves the very same sockets again.
//
// A call the dead process had read is gone with it. For Wait that would be fatal: containerd's CRI
// learns a container's exit only from the answer to its Wait (it ignores TaskExit events), so the
// container would stay RUNNING forever. Resumable calls (the daemon says which: the Task API's
// read-only ones, Wait among them) are therefore kept as well, while they are pending, and the next
// run answers them on their original stream ids. Every other call is kept too while it runs, by its
// stream id only: the next run answers it Unavailable at once (whether it took effect is unknown),
// where it would otherwise hang until containerd's deadline (2 minutes for kubelet's calls).
//
// Names in the keeper:
//   listen <socket path>                              the listener (its descriptor)
//   conn <socket path> <n>                            a connection (its descriptor)
//   call <socket path> <n> <stream id> <request>      a pending resumable call on connection n
//                                                     (request: base64), a note: no descriptor
//   inflight <socket path> <n> <stream id>            any other pending unary call, a note
//   fd <kind dir>/<name>                              a descriptor a kind keeps (KeptDescriptors:
//                                                     the FIFOs of stdio it copies), its own name
//
//   serve     adopts what the keeper holds for the socket path (resuming the calls), or listens
//             anew; what it opens is kept
//   accept    each new connection is kept, and dropped from the keeper once it closes
//   calls     a unary call is kept while it is pending (its note sent without waiting for the
//             keeper's reply: linux/fd-keeper.ts says why that holds through a crash)
//   close     (sandbox Shutdown) closes the server; the keeper lets go of its copies
//   handOver  (daemon exit) from then on nothing is dropped and endpoints are left open: the
//             process exit closes our descriptors, the keeper's stay for the next run
//
// Kept resumable calls are bounded per connection (MAX_KEPT_CALLS_PER_CONNECTION; the others are
// bounded by the server's own limit on short calls in flight). containerd holds one Wait per task
// (container or exec) on a sandbox's connection and a few short calls at a time, far fewer than
// that; a client that holds more has the calls past the bound served as usual but not kept, so a
// crash of kuasard leaves those unanswered (as any other call in flight), and a warning says so
// once per connection. The bound keeps what a client can make the keeper hold, and what the next
// run must take back, in proportion to the pods it serves.
//
// A keeper lost while this process runs (killed, or a failed exchange) is replaced at once: the
// connection to it is watched, and a failed exchange counts as a loss too. The new keeper (or
// the old one, if only the connection broke) is given everything this process holds now, and
// lets go of what this process dropped meanwhile: `held` is the record of what the keeper must
// hold at any moment. Without a keeper (its binary missing, or it failed to start) sockets are
// served as before and do not survive a crash; that is logged, not fatal.

import { lstat } from 'node:fs/promises';
import type net from 'node:net';
import type { Logger } from 'pino';
import { closeKept, FdKeeper, type KeptDescriptors, type KeptFd } from '../linux/fd-keeper.js';
import { closeFd } from '../linux/libc/files.js';
import type { PendingCall, TtrpcServer, TtrpcServerOptions } from '../rpc/ttrpc/server.js';

/** How many pending resumable calls of one connection are kept (see the header). */
export const MAX_KEPT_CALLS_PER_CONNECTION = 256;

/** What the keeper held for one connection when this process started. */
interface InheritedConnection {
  kept?: KeptFd & { fd: number };
  calls: PendingCall[];
  callNames: string[];
}

/** What the keeper held for one socket path when this process started. */
interface Inherited {
  listener?: KeptFd & { fd: number };
  connections: Map<number, InheritedConnection>;
}

/**
 * Whose descriptor an entry of the keeper copies: a socket or server served now, a descriptor
 * taken back from the keeper and not served yet, or nothing (a note).
 */
type Holder = net.Server | net.Socket | number | undefined;

type Hooks = Pick<TtrpcServerOptions, 'onListening' | 'onAccepted' | 'onPendingCall' | 'onPendingCallSettled'>;

/** The names of one connection's calls that are kept: resumable ones are counted against the bound. */
interface KeptCalls {
  resumable: Set<string>;
  inflight: Set<string>;
}

export class KeptTaskSockets {
  /** Kept descriptors not yet taken back by an endpoint, by socket path. */
  private readonly inherited = new Map<string, Inherited>();
  /** Descriptors the kinds kept in an earlier run and have not kept again (our duplicates), by name. */
  private readonly inheritedDescriptors = new Map<string, number>();
  /** Everything the keeper must hold for this process now, by name. */
  private readonly held = new Map<string, Holder>();
  /** The number in the keeper names of each connection served. */
  private readonly connectionNumbers = new WeakMap<net.Socket, number>();
  /** The names of each connection's calls that are kept. */
  private readonly keptCalls = new WeakMap<net.Socket, KeptCalls>();
  /** Connections whose calls went past the bound (told once each). */
  private readonly overflowReported = new WeakSet<net.Socket>();
  private nextConnection = 1;
  private handingOver = false;
  private replacing = false;

  private constructor(
    private readonly socketPath: string,
    private keeper: FdKeeper | undefined,
    kept: readonly KeptFd[],
    private readonly ownDirs: readonly string[],
    private readonly log: Logger,
  ) {
    for (const item of kept) {
      const parsed = this.parseOwnName(item.name);
      if (!parsed) {
        // Another daemon's (one per kind may share the keeper): its to take back. Holding our
        // duplicate would keep the socket open when that daemon closes it.
        if (item.fd !== undefined) closeFd(item.fd);
        continue;
      }
      if (parsed.descriptor) {
        if (item.fd === undefined) continue;
        this.inheritedDescriptors.set(item.name, item.fd);
        this.held.set(item.name, item.fd);
        continue;
      }
      if (parsed.call) {
        // A call is a note; a keeper started by an older kuasard held its connection with it.
        if (item.fd !== undefined) closeFd(item.fd);
        this.held.set(item.name, undefined);
      } else if (item.fd !== undefined) {
        this.held.set(item.name, item.fd);
      } else {
        continue; // a listener or connection without its descriptor serves nothing
      }
      const entry: Inherited = this.inherited.get(parsed.path) ?? { connections: new Map() };
      this.inherited.set(parsed.path, entry);
      if (parsed.connection === undefined) {
        entry.listener = { name: item.name, fd: item.fd! };
        continue;
      }
      this.nextConnection = Math.max(this.nextConnection, parsed.connection + 1);
      const connection = entry.connections.get(parsed.connection) ?? { calls: [], callNames: [] };
      entry.connections.set(parsed.connection, connection);
      if (parsed.call) {
        connection.calls.push(parsed.call);
        connection.callNames.push(item.name);
      } else {
        connection.kept = { name: item.name, fd: item.fd! };
      }
    }
    this.watchKeeper();
  }

  /**
   * Connects to the keeper whose control socket is `socketPath` (starting it if none runs) and
   * takes what it holds for task sockets below `ownDirs` (the state directories of the kinds
   * this daemon serves).
   */
  static async open(socketPath: string, ownDirs: readonly string[], log: Logger): Promise<KeptTaskSockets> {
    try {
      const { keeper, kept } = await FdKeeper.open({ socketPath });
      log.info({ kept: kept.length }, 'fd keeper connected');
      return new KeptTaskSockets(socketPath, keeper, kept, ownDirs, log);
    } catch (err) {
      log.error({ err }, 'no fd keeper: task connections will not survive a crash of kuasard');
      return new KeptTaskSockets(socketPath, undefined, [], ownDirs, log);
    }
  }

  /** TtrpcServer options that keep each socket the server opens for `path`, and its pending resumable calls. */
  hooks(path: string): Hooks {
    return {
      onListening: (listener) => this.keep(listenerName(path), listener),
      onAccepted: (socket) => {
        const n = this.nextConnection++;
        this.connectionNumbers.set(socket, n);
        const name = connectionName(path, n);
        this.keep(name, socket);
        socket.once('close', () => this.drop(name));
      },
      onPendingCall: (socket, call) => {
        const n = this.connectionNumbers.get(socket);
        if (n === undefined) return;
        const calls = this.keptCalls.get(socket) ?? { resumable: new Set<string>(), inflight: new Set<string>() };
        this.keptCalls.set(socket, calls);
        const kept = call.request ? calls.resumable : calls.inflight;
        if (call.request && kept.size >= MAX_KEPT_CALLS_PER_CONNECTION) {
          this.reportOverflow(socket, path);
          return;
        }
        const name = callName(path, n, call);
        kept.add(name);
        this.keepNote(name);
      },
      onPendingCallSettled: (socket, call) => {
        const n = this.connectionNumbers.get(socket);
        if (n === undefined) return;
        const name = callName(path, n, call);
        const calls = this.keptCalls.get(socket);
        // A call settles when it is answered, or when its connection closes (then its stream
        // is gone with it): either way nobody must answer it again. A resumable one stays kept
        // through a hand-over, where the process exit aborts it unanswered.
        if (call.request ? calls?.resumable.delete(name) : calls?.inflight.delete(name)) this.drop(name, !call.request, true);
      },
    };
  }

  /** What a kind keeps in the keeper, named below its directory `dir` (one of this daemon's). */
  descriptors(dir: string): KeptDescriptors {
    return {
      keep: (name, fd) => {
        const full = descriptorName(dir, name);
        // The copy an earlier run (or an earlier keep) left goes first: the caller holds `fd`
        // open now, so what it keeps open never closes in between.
        this.releaseDescriptor(full);
        this.keep(full, fd);
      },
      release: (name) => this.releaseDescriptor(descriptorName(dir, name)),
    };
  }

  private releaseDescriptor(name: string): void {
    const inherited = this.inheritedDescriptors.get(name);
    if (inherited !== undefined) {
      this.inheritedDescriptors.delete(name);
      closeFd(inherited);
    }
    if (this.held.has(name)) this.drop(name);
  }

  /**
   * Serves `path` on `server`: on the listener and connections an earlier run left in the
   * keeper (resuming their pending calls), or on a new listener when there is none (or its
   * socket file is gone).
   */
  async serve(server: TtrpcServer<unknown>, path: string): Promise<void> {
    const inherited = this.inherited.get(path);
    this.inherited.delete(path);
    const listener = inherited?.listener;
    const connections = [...(inherited?.connections ?? new Map<number, InheritedConnection>())];
    let adopting = false;
    try {
      if (listener && (await isSocketFile(path))) {
        adopting = true;
        await server.adoptListener(listener.fd, path);
      } else {
        if (listener) this.release(listener);
        await server.listen(path);
      }
    } catch (err) {
      // Without a listener the endpoint fails and the connections have nobody to serve them. A
      // listener descriptor the server tried to adopt is the server's (closed with it).
      if (adopting && listener) this.drop(listener.name);
      for (const [, connection] of connections) this.releaseConnection(connection);
      throw err;
    }
    let resumed = 0;
    for (const [n, connection] of connections) {
      if (!connection.kept) {
        this.releaseConnection(connection);
        continue;
      }
      const name = connection.kept.name;
      const socket = server.adoptConnection(connection.kept.fd, connection.calls);
      // Set before any resumed call can settle: handlers answer on a later tick at the soonest.
      this.connectionNumbers.set(socket, n);
      // The adopted connection answered the calls that cannot run again (Unavailable): done with.
      const resumable = new Set<string>();
      connection.calls.forEach((call, i) => {
        if (call.request) resumable.add(connection.callNames[i]!);
        else this.drop(connection.callNames[i]!);
      });
      this.keptCalls.set(socket, { resumable, inflight: new Set() });
      socket.once('close', () => this.drop(name));
      resumed += connection.calls.length;
    }
    if (inherited) this.log.info({ path, listener: Boolean(listener), connections: connections.length, resumed }, 'task socket taken over');
  }

  /** Whether a keeper holds our descriptors now: without one, a kuasard crash closes containerd's task connections. */
  get keeperUp(): boolean {
    return this.keeper?.connected === true;
  }

  /** Closes an endpoint's server for good (the sandbox is shut down); at daemon exit, leaves it. */
  async close(server: TtrpcServer<unknown>, path: string): Promise<void> {
    if (this.handingOver && this.keeper?.connected) return;
    await server.close();
    this.drop(listenerName(path));
  }

  /**
   * Lets go of what the keeper held that no endpoint took back, and of the descriptors no kind
   * kept again: those sandboxes or processes are gone or could not be recovered. Call once
   * every sandbox is recovered.
   */
  releaseUnclaimed(): void {
    for (const [path, inherited] of this.inherited) {
      this.inherited.delete(path);
      if (inherited.listener) this.release(inherited.listener);
      for (const connection of inherited.connections.values()) this.releaseConnection(connection);
      this.log.info({ path }, 'released the kept sockets of a sandbox that is gone');
    }
    const descriptors = [...this.inheritedDescriptors.keys()];
    for (const name of descriptors) this.releaseDescriptor(name);
    if (descriptors.length > 0) this.log.info({ descriptors: descriptors.length }, 'released kept descriptors no kind took back');
  }

  /**
   * The daemon exits and a later run takes over: nothing is dropped from the keeper any more,
   * endpoints are not closed (the process exit closes our descriptors; the keeper's stay), and
   * a keeper lost from now on is not replaced.
   */
  handOver(): void {
    this.handingOver = true;
  }

  private keep(name: string, holder: Holder): void {
    this.held.set(name, holder);
    this.withKeeper(`keeping ${name}`, (keeper) => keeper.put(name, descriptorOf(holder)));
  }

  /** A pending call's note: sent without waiting for the keeper's reply (fd-keeper.ts says why that is as safe). */
  private keepNote(name: string): void {
    this.held.set(name, undefined);
    this.withKeeper(`keeping ${name}`, (keeper) => keeper.putNote(name));
  }

  /**
   * Has the keeper let go of `name`. Once handing over, only an answered call's note is still
   * dropped (`answered`): anything else dropped then would be torn down by this process's exit,
   * which must leave it to the next run; a note kept for an answered call would make the next
   * run answer it a second time.
   */
  private drop(name: string, answered = false, note = false): void {
    if (this.handingOver && !answered) return;
    this.held.delete(name);
    this.withKeeper(`dropping ${name}`, (keeper) => (note ? keeper.dropNote(name) : keeper.drop(name)));
  }

  /** Closes our duplicate and has the keeper close its copy. */
  private release(item: KeptFd & { fd: number }): void {
    closeFd(item.fd);
    this.drop(item.name);
  }

  private releaseConnection(connection: InheritedConnection): void {
    if (connection.kept) this.release(connection.kept);
    for (const name of connection.callNames) this.drop(name);
  }

  private withKeeper(what: string, action: (keeper: FdKeeper) => void): void {
    const keeper = this.keeper;
    if (!keeper?.connected) return;
    try {
      action(keeper);
    } catch (err) {
      this.log.warn({ err }, `fd keeper: ${what} failed`);
      // An answer (name in use, no such name...) leaves the connection up; anything else broke it.
      if (!keeper.connected) this.replaceKeeper();
    }
  }

  /** Watches the keeper for its loss, and hears of a note's command that failed after it was sent. */
  private watchKeeper(): void {
    const keeper = this.keeper;
    if (!keeper) return;
    keeper.watch(() => this.replaceKeeper());
    keeper.onLateFailure = (err) => {
      this.log.warn({ err }, 'fd keeper: a note failed');
      if (this.keeper === keeper && !keeper.connected) this.replaceKeeper();
    };
  }

  /** A keeper lost while this process runs: another is started (or reached) and given everything. */
  private replaceKeeper(): void {
    if (this.replacing || this.handingOver) return;
    this.replacing = true;
    this.keeper?.close();
    this.keeper = undefined;
    this.log.error('lost the fd keeper: starting another and handing it everything held');
    void this.reconnect().finally(() => (this.replacing = false));
  }

  private async reconnect(): Promise<void> {
    let opened: Awaited<ReturnType<typeof FdKeeper.open>>;
    try {
      opened = await FdKeeper.open({ socketPath: this.socketPath });
    } catch (err) {
      this.log.error({ err }, 'no fd keeper: task connections will not survive a crash of kuasard');
      return;
    }
    const { keeper, kept } = opened;
    this.keeper = keeper;
    // The keeper holds what it held when the connection broke (nothing if it is a new one):
    // what this process kept or dropped meanwhile is only in `held`.
    closeKept(kept);
    const present = new Set(kept.map((item) => item.name));
    let dropped = 0;
    let given = 0;
    for (const name of present) {
      if (this.held.has(name) || !this.parseOwnName(name)) continue;
      this.withKeeper(`dropping ${name}`, (k) => k.drop(name));
      dropped++;
    }
    for (const [name, holder] of this.held) {
      if (present.has(name)) continue;
      this.withKeeper(`keeping ${name}`, (k) => k.put(name, descriptorOf(holder)));
      given++;
    }
    if (!keeper.connected) return; // lost again: withKeeper has started the next replacement
    this.watchKeeper();
    this.log.info({ given, dropped, held: this.held.size }, 'fd keeper replaced: it holds everything again');
  }

  private reportOverflow(socket: net.Socket, path: string): void {
    if (this.overflowReported.has(socket)) return;
    this.overflowReported.add(socket);
    this.log.warn(
      { path, bound: MAX_KEPT_CALLS_PER_CONNECTION },
      'a connection holds more resumable calls than are kept: those past the bound are not answered after a crash of kuasard',
    );
  }

  /** The parsed name if it names a task socket below one of this daemon's directories. */
  private parseOwnName(name: string): ParsedName | undefined {
    const parsed = parseName(name);
    return parsed && this.ownDirs.some((dir) => parsed.path.startsWith(`${dir}/`)) ? parsed : undefined;
  }
}

function listenerName(path: string): string {
  return `listen ${path}`;
}

function descriptorName(dir: string, name: string): string {
  return `fd ${dir}/${name}`;
}

function connectionName(path: string, n: number): string {
  return `conn ${path} ${n}`;
}

function callName(path: string, n: number, call: PendingCall): string {
  if (!call.request) return `inflight ${path} ${n} ${call.streamId}`;
  return `call ${path} ${n} ${call.streamId} ${Buffer.from(call.request).toString('base64')}`;
}

interface ParsedName {
  path: string;
  /** Set for a connection and for a call: the connection's number. */
  connection?: number;
  call?: PendingCall;
  /** A kind's descriptor: `path` is its directory and name. */
  descriptor?: true;
}

/** Parses the names above (a path may hold spaces: the fields after it are matched from the end). */
function parseName(name: string): ParsedName | undefined {
  let match = /^fd (\/.*)$/.exec(name);
  if (match) return { path: match[1]!, descriptor: true };
  match = /^listen (\/.*)$/.exec(name);
  if (match) return { path: match[1]! };
  match = /^conn (\/.*) (\d+)$/.exec(name);
  if (match) return { path: match[1]!, connection: Number(match[2]) };
  match = /^inflight (\/.*) (\d+) (\d+)$/.exec(name);
  if (match) return { path: match[1]!, connection: Number(match[2]), call: { streamId: Number(match[3]) } };
  match = /^call (\/.*) (\d+) (\d+) ([A-Za-z0-9+/]+={0,2})$/.exec(name);
  if (match) {
    const call = { streamId: Number(match[3]), request: new Uint8Array(Buffer.from(match[4]!, 'base64')) };
    return { path: match[1]!, connection: Number(match[2]), call };
  }
  return undefined;
}

async function isSocketFile(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isSocket();
  } catch {
    return false;
  }
}

/**
 * The descriptor an entry copies (none for a note). Node has no public API for the one behind a
 * socket or server: this relies on the libuv handle of a net.Socket/net.Server over a unix
 * socket exposing it as `_handle.fd`, which it does on Linux (and every Unix) in every Node
 * release so far.
 */
function descriptorOf(holder: Holder): number | undefined {
  if (holder === undefined || typeof holder === 'number') return holder;
  const fd = (holder as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('no file descriptor behind this socket');
  return fd;
}
