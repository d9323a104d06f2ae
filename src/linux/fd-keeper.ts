// The client of the fd keeper (native/fd-keeper.c): a tiny process that holds file descriptors
// for kuasard so that they outlive it. Whatever is kept there stays open through a crash of
// kuasard (a socket's peer sees no EOF), and a restarted kuasard takes it back.
//
// Protocol (the C file has the whole description): a SOCK_SEQPACKET unix socket, one text
// message per command or reply; a name is any text of 1 to 4000 bytes without NUL or newline.
//   PUT <name> [+ one fd (SCM_RIGHTS)]  -> OK | ERR <reason>     (without an fd: a note)
//   DROP <name>                         -> OK | ERR <reason>
//   LIST   -> per entry, FD <name> + a duplicate of its fd, or NOTE <name>; then END
//
// A listing hands this process a duplicate of every kept descriptor at once, so what it can take
// is bounded by RLIMIT_NOFILE; a note costs nothing of it. When the kernel has no room left for
// a passed descriptor it drops it and flags the reply MSG_CTRUNC, reported as such here.
//
// Calls are synchronous: the keeper answers at once (it only stores descriptors), and a
// blocking exchange keeps replies in step with commands without any queueing. A command
// without a descriptor and its OK/ERR reply go through plain write(2)/read(2) (node:fs):
// kuasard sends two per Task API call (its in-flight note), and sendmsg/recvmsg through koffi
// cost three times as much each, marshalling their msghdr (measured: 0.13 ms against 0.045 ms
// per exchange). A seqpacket socket keeps a write one message, and read(2) takes one.
//
// Notes of pending calls (putNote, dropNote) do not wait for their reply at all: a blocking
// exchange waits for the keeper to be scheduled, which on a busy host is most of a Task API
// call's time on kuasard's main thread. Their replies are read later, all at once (a moment
// after, or before the next exchange that waits): an ERR among them is told to `onLateFailure`.
// The keeper carries out every command sent, in order, even if this process dies before reading
// the replies (fd-keeper.c), so a note sent is as good as a note answered. Each exchange is
// bounded by a timeout (SO_RCVTIMEO/SO_SNDTIMEO; a signal that interrupts the wait, such as one
// of kuasard's many SIGCHLDs, only makes it wait again: libc/binding.ts retries EINTR); after a failed
// one the connection is closed, since a late reply would answer the wrong command.

import { spawn } from 'node:child_process';
import { readSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { nativeProgram } from '../base/native-programs.js';
import { passedDescriptors, rightsMessage, rightsSpace } from './cmsg.js';
import { hasErrnoCode } from './libc/binding.js';
import { closeFd } from './libc/files.js';
import { connectUnix, peerHasHungUp, type ReceivedMessage, receiveMessage, sendMessage, setSocketTimeouts } from './libc/sockets.js';

/** Where `npm run build:native` puts the keeper: dist/native/ (this module is dist/src/linux/fd-keeper.js). */
export const FD_KEEPER_BINARY = nativeProgram('fd-keeper');

/** The keeper's limits (MAX_NAME, MAX_MESSAGE in fd-keeper.c). */
const MAX_NAME_BYTES = 4000;
const MAX_MESSAGE_BYTES = 4096;
const DEFAULT_TIMEOUT_MS = 5_000;
/** Connect attempts: a keeper that is starting or just quitting may refuse one or two. */
const CONNECT_ATTEMPTS = 20;
const CONNECT_RETRY_MS = 50;
/** How often watch() looks for the keeper's hang-up. */
const WATCH_INTERVAL_MS = 500;
/** How soon the replies to notes are read: by then the keeper has answered them, so reading them does not wait. */
const COLLECT_AFTER_MS = 20;
/** Notes sent without their reply read, at most: the keeper's replies must not fill its socket's buffer. */
const MAX_UNREAD_REPLIES = 64;

/** One entry the keeper holds, as handed back by list(): the caller owns `fd` (none for a note). */
export interface KeptFd {
  name: string;
  fd?: number;
}

/**
 * Descriptors a part of the daemon has the keeper hold, each under a name of its own, so that
 * what they hold open (the end of a FIFO containerd reads) stays open through a crash of the
 * daemon. The next run keeps a descriptor of its own under the same name, which replaces the
 * copy the keeper held; what nobody keeps again is let go once the daemon has recovered.
 */
export interface KeptDescriptors {
  /**
   * Has the keeper hold a copy of `fd` under `name`, replacing a copy held under it. `fd` stays
   * the caller's, open until `release` (a replaced keeper is given it again).
   */
  keep(name: string, fd: number): void;
  /** Has the keeper close its copy under `name`, if it holds one. */
  release(name: string): void;
}

export interface FdKeeperOptions {
  /** The keeper's control socket (in a 0700 directory: the keeper creates it 0600). */
  socketPath: string;
  /** The keeper's executable (default FD_KEEPER_BINARY). */
  binary?: string;
  /** How long one exchange with the keeper may take (default 5 s). */
  timeoutMs?: number;
}

export class FdKeeperError extends Error {
  override readonly name = 'FdKeeperError';
}

export class FdKeeper {
  private socket: number | undefined;
  /** Where receiveText reads each reply: one per connection, replies being read one at a time. */
  private readonly replyBuffer = Buffer.allocUnsafe(MAX_MESSAGE_BYTES + 1);
  private watchTimer: NodeJS.Timeout | undefined;
  /** The commands sent whose replies have not been read yet, oldest first. */
  private readonly unread: string[] = [];
  private collectTimer: NodeJS.Timeout | undefined;
  /** Told of a note's command that failed, once its reply is read (the connection may be closed by then). */
  onLateFailure: (err: FdKeeperError) => void = () => undefined;

  private constructor(socket: number) {
    this.socket = socket;
  }

  /**
   * Connects to the keeper of `socketPath`, starting it first (in its own session, so that it
   * outlives this process) when none runs, and takes the listing of what it holds: the caller
   * owns the returned descriptors (duplicates; the keeper keeps its own).
   */
  static async open(options: FdKeeperOptions): Promise<{ keeper: FdKeeper; kept: KeptFd[] }> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let lastError: unknown;
    for (let attempt = 0; attempt < CONNECT_ATTEMPTS; attempt++) {
      let socket: number;
      try {
        socket = connectUnix(options.socketPath, 'seqpacket');
      } catch (err) {
        if (!hasErrnoCode(err, 'ENOENT', 'ECONNREFUSED')) throw err;
        lastError = err;
        // Nobody serves the socket: start a keeper (if another one is starting, it says so).
        if ((await startKeeper(options.binary ?? FD_KEEPER_BINARY, resolve(options.socketPath))) === 'running') {
          await new Promise((wake) => setTimeout(wake, CONNECT_RETRY_MS));
        }
        continue;
      }
      const keeper = new FdKeeper(socket);
      try {
        setSocketTimeouts(socket, timeoutMs);
        return { keeper, kept: keeper.list() };
      } catch (err) {
        // A keeper that quits as we connect (it held nothing and its last client had just
        // left) hangs up on us: a new one is started on the next attempt.
        keeper.close();
        lastError = err;
      }
    }
    throw new FdKeeperError(`cannot reach the fd keeper at ${options.socketPath}: ${(lastError as Error)?.message}`);
  }

  /** Whether the connection is up (it closes after a failed exchange, or by close()). */
  get connected(): boolean {
    return this.socket !== undefined;
  }

  /**
   * Gives the keeper a duplicate of `fd` under `name` (which must not be in use); `fd` stays
   * ours. Without `fd`, the keeper keeps the name alone (a note).
   */
  put(name: string, fd?: number): void {
    checkName(name);
    this.expectOk(`PUT ${name}`, fd);
  }

  /** Has the keeper close the descriptor it holds under `name`. */
  drop(name: string): void {
    checkName(name);
    this.expectOk(`DROP ${name}`);
  }

  /** PUT of a note, without waiting for its reply (see the header). */
  putNote(name: string): void {
    checkName(name);
    this.post(`PUT ${name}`);
  }

  /** DROP of a note, without waiting for its reply (see the header). */
  dropNote(name: string): void {
    checkName(name);
    this.post(`DROP ${name}`);
  }

  private post(command: string): void {
    this.send(command);
    this.unread.push(command);
    if (this.unread.length >= MAX_UNREAD_REPLIES) this.collectNow();
    else this.collectLater();
  }

  private collectLater(): void {
    if (this.collectTimer) return;
    this.collectTimer = setTimeout(() => {
      this.collectTimer = undefined;
      try {
        this.collect();
      } catch (err) {
        this.onLateFailure(err as FdKeeperError);
      }
    }, COLLECT_AFTER_MS).unref();
  }

  /** Reads the replies to the notes sent; throws at the first failure, having read the others (or lost the connection). */
  private collect(): void {
    let failure: FdKeeperError | undefined;
    while (this.unread.length > 0) {
      const command = this.unread[0]!;
      const reply = this.receiveText();
      this.unread.shift();
      if (reply === 'OK') continue;
      if (!reply.startsWith('ERR ')) throw this.broken(`unexpected reply to ${command}: ${JSON.stringify(reply)}`);
      failure ??= new FdKeeperError(`fd keeper: ${command}: ${reply.slice(4)}`);
    }
    if (failure) throw failure;
  }

  /** Before an exchange that waits: the replies to the notes sent before it come first. */
  private collectNow(): void {
    if (this.unread.length === 0) return;
    clearTimeout(this.collectTimer);
    this.collectTimer = undefined;
    try {
      this.collect();
    } catch (err) {
      this.onLateFailure(err as FdKeeperError);
      if (!this.connected) throw err;
    }
  }

  /** Duplicates of every descriptor the keeper holds, with their names; the caller owns them. */
  list(): KeptFd[] {
    const kept: KeptFd[] = [];
    this.collectNow();
    try {
      this.send('LIST');
      for (;;) {
        const reply = this.receive();
        if (reply.text === 'END' && reply.fds.length === 0) return kept;
        const [, kind, name] = /^(FD|NOTE) (.+)$/s.exec(reply.text) ?? [];
        if (!name || reply.fds.length !== (kind === 'FD' ? 1 : 0)) {
          closeAll(reply.fds);
          throw this.broken(`unexpected reply to LIST: ${JSON.stringify(reply.text)} with ${reply.fds.length} descriptors`);
        }
        kept.push(kind === 'FD' ? { name, fd: reply.fds[0]! } : { name });
      }
    } catch (err) {
      closeKept(kept);
      throw err;
    }
  }

  /**
   * Calls `onLost` once if the keeper goes away (it died or was killed) while this client is
   * connected: the connection is looked at every WATCH_INTERVAL_MS for a hang-up (Node cannot
   * wait on a SOCK_SEQPACKET socket, and the keeper never writes unasked, so a hang-up is all
   * there is to see). The watch does not keep this process alive; close() ends it.
   */
  watch(onLost: () => void): void {
    clearInterval(this.watchTimer);
    this.watchTimer = setInterval(() => {
      if (this.socket !== undefined && this.stillConnected(this.socket)) return;
      this.close();
      onLost();
    }, WATCH_INTERVAL_MS).unref();
  }

  /**
   * Whether the keeper is still at the other end. A check that fails (the socket is unusable)
   * counts as a hang-up: it runs in a timer, where a throw would end the daemon.
   */
  private stillConnected(socket: number): boolean {
    try {
      return !peerHasHungUp(socket);
    } catch {
      return false;
    }
  }

  /** Disconnects (and stops watching); the keeper keeps everything it holds. */
  close(): void {
    clearInterval(this.watchTimer);
    this.watchTimer = undefined;
    clearTimeout(this.collectTimer);
    this.collectTimer = undefined;
    this.unread.length = 0;
    if (this.socket === undefined) return;
    closeFd(this.socket);
    this.socket = undefined;
  }

  private expectOk(command: string, fd?: number): void {
    this.collectNow();
    this.send(command, fd);
    const reply = this.receiveText();
    if (reply === 'OK') return;
    if (reply.startsWith('ERR ')) throw new FdKeeperError(`fd keeper: ${command}: ${reply.slice(4)}`);
    throw this.broken(`unexpected reply to ${command}: ${JSON.stringify(reply)}`);
  }

  private send(command: string, fd?: number): void {
    const socket = this.connectedSocket();
    const data = Buffer.from(command);
    try {
      if (fd !== undefined) sendMessage(socket, data, rightsMessage([fd]));
      else if (retryingEintr(() => writeSync(socket, data)) !== data.length) throw new Error('the message was cut short');
    } catch (err) {
      throw this.broken(`sending ${command.split(' ')[0]}: ${(err as Error).message}`);
    }
  }

  private receive(): { text: string; fds: number[] } {
    const socket = this.connectedSocket();
    let message: ReceivedMessage;
    try {
      message = receiveMessage(socket, MAX_MESSAGE_BYTES + 1, rightsSpace(1));
    } catch (err) {
      throw this.broken(`waiting for a reply: ${(err as Error).message}`);
    }
    const fds = passedDescriptors(message.control);
    if (message.data.length === 0 || message.truncated || message.controlTruncated) {
      closeAll(fds);
      if (message.data.length === 0) throw this.broken('the keeper hung up');
      if (message.truncated) throw this.broken('reply too long');
      throw this.broken('a passed descriptor was dropped: this process is out of descriptors (RLIMIT_NOFILE)');
    }
    return { text: message.data.toString('utf8'), fds };
  }

  /**
   * A reply that carries no descriptor (OK or ERR), by read(2); a descriptor passed with it
   * anyway is closed by the kernel.
   */
  private receiveText(): string {
    const socket = this.connectedSocket();
    const buffer = this.replyBuffer;
    let length: number;
    try {
      length = retryingEintr(() => readSync(socket, buffer, 0, buffer.length, null));
    } catch (err) {
      throw this.broken(`waiting for a reply: ${(err as Error).message}`);
    }
    if (length === 0) throw this.broken('the keeper hung up');
    if (length > MAX_MESSAGE_BYTES) throw this.broken('reply too long');
    return buffer.toString('utf8', 0, length);
  }

  private connectedSocket(): number {
    if (this.socket === undefined) throw new FdKeeperError('not connected to the fd keeper');
    return this.socket;
  }

  /** Closes the connection: after a failed exchange, replies can no longer be matched to commands. */
  private broken(message: string): FdKeeperError {
    this.close();
    return new FdKeeperError(`fd keeper: ${message}`);
  }
}

/**
 * Runs a read(2) or write(2) of node:fs again when a signal interrupted it: libuv does not retry
 * an interrupted read, and a socket with a receive timeout fails with EINTR even under
 * SA_RESTART (signal(7)); kuasard gets a SIGCHLD for every child that ends.
 */
function retryingEintr(io: () => number): number {
  for (;;) {
    try {
      return io();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EINTR') throw err;
    }
  }
}

function checkName(name: string): void {
  if (name.length === 0 || Buffer.byteLength(name) > MAX_NAME_BYTES || /[\0\n]/.test(name)) {
    throw new FdKeeperError(`invalid fd keeper name ${JSON.stringify(name)}: 1 to ${MAX_NAME_BYTES} bytes, no NUL or newline`);
  }
}

function closeAll(fds: readonly number[]): void {
  for (const fd of fds) closeFd(fd);
}

/** Closes the duplicates a listing handed over (the keeper keeps its own). */
export function closeKept(kept: readonly KeptFd[]): void {
  for (const { fd } of kept) if (fd !== undefined) closeFd(fd);
}

/**
 * Starts a keeper in its own session and waits for its verdict on stdout: "ready" (it serves
 * the socket now), "running" (another keeper has the directory), or "error: <reason>".
 */
async function startKeeper(binary: string, socketPath: string): Promise<'ready' | 'running'> {
  const child = spawn(binary, [socketPath], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  // The keeper closes stdout once it has told how it started, and lives on; an error exits it.
  const outcome = await new Promise<Error | undefined>((resolveStart) => {
    child.once('error', resolveStart);
    child.stdout.once('close', () => resolveStart(undefined));
  });
  // The keeper is reaped when it exits, but must not keep this process's event loop alive.
  child.unref();
  if (outcome) throw new FdKeeperError(`cannot start the fd keeper ${binary}: ${outcome.message}`);
  const verdict = output.trim();
  if (verdict === 'ready' || verdict === 'running') return verdict;
  throw new FdKeeperError(`the fd keeper ${binary} did not start: ${verdict || 'it exited without a word'}`);
}
