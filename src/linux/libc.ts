// Typed bindings to the few libc calls Node has no API for (prctl, waitpid, mount, umount2,
// pidfd_open, poll, unshare, setns, sethostname; fcntl, pipe2, unix sockets with sendmsg/recvmsg, the TIOCSWINSZ ioctl). koffi and libc are loaded on first use, so importing this module costs
// nothing on hosts or in tests that never call into it. Every failing call throws an ErrnoError
// that names the operation and the errno (EINVAL, ECHILD, ...).
//
// Signals: kuasard handles SIGCHLD (linux/reaper.ts), many of them when containers start and
// end. Node installs its signal handlers with SA_RESTART, which restarts most interrupted calls,
// but not all: signal(7) lists socket calls on a socket with SO_RCVTIMEO or SO_SNDTIMEO (the fd
// keeper's connection has both), poll and others as never restarted. Every call here that can
// sleep therefore goes through checkRetrying, which calls it again on EINTR: recvmsg, sendmsg,
// connect, accept4 and waitpid. The others never sleep (prctl, socket, bind, listen, pipe2,
// fcntl without locks, ioctl TIOCSWINSZ, setsockopt, setns, unshare, sethostname, a poll with
// a zero timeout), or sleep uninterruptibly on local filesystems (mount, umount2). close is
// never retried: Linux releases the descriptor even when close reports EINTR, and a second
// close could hit a descriptor another part of the process has opened since.

import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';

// koffi's types only, at compile time; the module itself is required lazily below.
type Koffi = typeof import('koffi');

/** A failed system call: `code` is the errno name, as in Node's own system errors. */
export class ErrnoError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly operation: string;

  constructor(operation: string, errno: number) {
    const code = errnoName(errno);
    super(`${operation}: ${code}`);
    this.name = 'ErrnoError';
    this.errno = errno;
    this.code = code;
    this.operation = operation;
  }
}

/** True when `err` is an ErrnoError (or a Node system error) with one of the given codes. */
export function hasErrnoCode(err: unknown, ...codes: string[]): boolean {
  return err instanceof Error && codes.includes((err as { code?: unknown }).code as string);
}

const errnoNames = new Map<number, string>(
  Object.entries(osConstants.errno).map(([name, value]) => [value, name] as [number, string]),
);

export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

interface Bindings {
  koffi: Koffi;
  prctl: (option: number, a2: number, a3: number, a4: number, a5: number) => number;
  /** prctl for the options that write an int through arg2 (the PR_GET_* ones). */
  prctlGetInt: (option: number, out: [number], a3: number, a4: number, a5: number) => number;
  waitpid: (pid: number, status: [number], options: number) => number;
  mount: (source: string | null, target: string, fstype: string | null, flags: number, data: string | null) => number;
  umount2: (target: string, flags: number) => number;
  poll: (fds: { fd: number; events: number; revents: number }, nfds: number, timeoutMs: number) => number;
  close: (fd: number) => number;
  syscall: (nr: number, ...typedArgs: unknown[]) => number | bigint;
  unshare: (flags: number) => number;
  setns: (fd: number, nstype: number) => number;
  sethostname: (name: string, length: number) => number;
  mallocTrim: (pad: number) => number;
}

let bindings: Bindings | undefined;

function libc(): Bindings {
  if (bindings) return bindings;
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  const lib = koffi.load('libc.so.6');
  koffi.struct('kuasar_pollfd', { fd: 'int', events: 'short', revents: 'short' });
  bindings = {
    koffi,
    prctl: lib.func('int prctl(int, unsigned long, unsigned long, unsigned long, unsigned long)'),
    prctlGetInt: lib.func('int prctl(int, _Out_ int *, unsigned long, unsigned long, unsigned long)'),
    waitpid: lib.func('int waitpid(int pid, _Out_ int *status, int options)'),
    mount: lib.func(
      'int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)',
    ),
    umount2: lib.func('int umount2(const char *target, int flags)'),
    poll: lib.func('int poll(_Inout_ kuasar_pollfd *fds, unsigned long nfds, int timeout)'),
    close: lib.func('int close(int fd)'),
    syscall: lib.func('long syscall(long number, ...)'),
    unshare: lib.func('int unshare(int flags)'),
    setns: lib.func('int setns(int fd, int nstype)'),
    sethostname: lib.func('int sethostname(const char *name, size_t len)'),
    mallocTrim: lib.func('int malloc_trim(size_t pad)'),
  };
  return bindings;
}

/** Runs a libc call that returns -1 on failure and turns the failure into an ErrnoError. */
function check(operation: string, result: number | bigint): number {
  const value = Number(result);
  if (value === -1) throw new ErrnoError(operation, libc().koffi.errno());
  return value;
}

const EINTR = osConstants.errno.EINTR;

/**
 * check() for a call that may sleep: `call` runs again as long as a signal interrupts it
 * (EINTR), so that only a real failure is reported (see the header comment).
 */
function checkRetrying(operation: string, call: () => number | bigint): number {
  for (;;) {
    const value = Number(call());
    if (value !== -1) return value;
    const errno = libc().koffi.errno();
    if (errno !== EINTR) throw new ErrnoError(operation, errno);
  }
}

// ---- prctl ---------------------------------------------------------------------------------

export const PR_SET_CHILD_SUBREAPER = 36;
export const PR_GET_CHILD_SUBREAPER = 37;

export function prctl(option: number, arg2 = 0, arg3 = 0, arg4 = 0, arg5 = 0): number {
  return check(`prctl(${option})`, libc().prctl(option, arg2, arg3, arg4, arg5));
}

/** Orphaned descendants of this process are re-parented to it instead of to PID 1. */
export function setChildSubreaper(on = true): void {
  prctl(PR_SET_CHILD_SUBREAPER, on ? 1 : 0);
}

export function isChildSubreaper(): boolean {
  const out: [number] = [0];
  check('prctl(PR_GET_CHILD_SUBREAPER)', libc().prctlGetInt(PR_GET_CHILD_SUBREAPER, out, 0, 0, 0));
  return out[0] !== 0;
}

// ---- waitpid -------------------------------------------------------------------------------

export const WNOHANG = 1;

/** A wait status decoded as the W* macros of <sys/wait.h> decode it. */
export interface WaitStatus {
  /** The raw status word. */
  raw: number;
  /** Set when the process called exit (WIFEXITED): WEXITSTATUS. */
  exitCode?: number;
  /** Set when a signal killed the process (WIFSIGNALED): WTERMSIG. */
  signal?: number;
  /** WCOREDUMP, only meaningful with `signal`. */
  coreDumped?: boolean;
}

export function decodeWaitStatus(raw: number): WaitStatus {
  const termsig = raw & 0x7f;
  if (termsig === 0) return { raw, exitCode: (raw >> 8) & 0xff };
  // 0x7f in the low bits means stopped (WIFSTOPPED); we never ask for stops (no WUNTRACED).
  if (termsig !== 0x7f) return { raw, signal: termsig, coreDumped: (raw & 0x80) !== 0 };
  return { raw };
}

/**
 * waitpid(2). Returns undefined when WNOHANG is set and the child has not changed state yet.
 * Throws ErrnoError ECHILD when `pid` is not a child of this process (or was reaped already).
 */
export function waitpid(pid: number, options = 0): { pid: number; status: WaitStatus } | undefined {
  const status: [number] = [0];
  const waited = checkRetrying(`waitpid(${pid})`, () => libc().waitpid(pid, status, options));
  if (waited === 0) return undefined;
  return { pid: waited, status: decodeWaitStatus(status[0]) };
}

// ---- mount ---------------------------------------------------------------------------------

/** mount(2) flags (from <sys/mount.h>). */
export const MS = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  SYNCHRONOUS: 0x10,
  REMOUNT: 0x20,
  MANDLOCK: 0x40,
  DIRSYNC: 0x80,
  NOSYMFOLLOW: 0x100,
  NOATIME: 0x400,
  NODIRATIME: 0x800,
  BIND: 0x1000,
  MOVE: 0x2000,
  REC: 0x4000,
  SILENT: 0x8000,
  UNBINDABLE: 0x20000,
  PRIVATE: 0x40000,
  SLAVE: 0x80000,
  SHARED: 0x100000,
  RELATIME: 0x200000,
  STRICTATIME: 0x1000000,
  LAZYTIME: 0x2000000,
} as const;

/** umount2(2) flags. */
export const MNT = { FORCE: 0x1, DETACH: 0x2, EXPIRE: 0x4, NOFOLLOW: 0x8 } as const;

export function mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void {
  check(`mount ${source ?? 'none'} on ${target}`, libc().mount(source, target, fstype, flags, data));
}

export function umount2(target: string, flags = 0): void {
  check(`umount ${target}`, libc().umount2(target, flags));
}

// ---- pidfd ---------------------------------------------------------------------------------

const SYS_pidfd_open = 434; // x86_64 and aarch64 share this number (it came after the unification)
const POLLIN = 0x1;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const POLLRDHUP = 0x2000;

/** poll(2) of one descriptor without waiting (it cannot be interrupted): the events it reports now. */
function pollNow(fd: number, events: number): number {
  const fds = { fd, events, revents: 0 };
  check(`poll(${fd})`, libc().poll(fds, 1, 0));
  return fds.revents;
}

/** pidfd_open(2): a file descriptor that refers to this very process, immune to pid reuse. */
export function pidfdOpen(pid: number): number {
  return check(`pidfd_open(${pid})`, libc().syscall(SYS_pidfd_open, 'int', pid, 'unsigned int', 0));
}

/** True once the process behind a pidfd has exited (the pidfd polls readable). Never blocks. */
export function pidfdHasExited(pidfd: number): boolean {
  return (pollNow(pidfd, POLLIN) & POLLIN) !== 0;
}

/** True once the peer of a connected socket has closed it (or shut down its sending side). Never blocks. */
export function peerHasHungUp(fd: number): boolean {
  return (pollNow(fd, POLLRDHUP) & (POLLRDHUP | POLLHUP | POLLERR)) !== 0;
}

export function closeFd(fd: number): void {
  check(`close(${fd})`, libc().close(fd));
}

// ---- namespaces ----------------------------------------------------------------------------

/** clone(2) flag of a PID namespace, for unshare and setns. */
export const CLONE_NEWPID = 0x20000000;
/** clone(2) flags of the IPC and UTS namespaces (both per thread: unshare moves only the caller). */
export const CLONE_NEWIPC = 0x08000000;
export const CLONE_NEWUTS = 0x04000000;

/** unshare(2) for the calling thread (with CLONE_NEWPID: only its later children move). */
export function unshare(flags: number): void {
  check(`unshare(0x${flags.toString(16)})`, libc().unshare(flags));
}

/** setns(2): join (or, for PID namespaces, make children join) the namespace behind `fd`. */
export function setns(fd: number, nstype: number): void {
  check(`setns(${fd}, 0x${nstype.toString(16)})`, libc().setns(fd, nstype));
}

/** sethostname(2): the hostname of the calling thread's UTS namespace. */
export function sethostname(name: string): void {
  check(`sethostname(${name})`, libc().sethostname(name, Buffer.byteLength(name)));
}

// ---- descriptors, pipes, fd-passing sockets, terminals --------------------------------------
// Bound apart from the calls above (their own lazy group), for the stdio plumbing of processes.

interface IoBindings {
  fcntl: (fd: number, cmd: number, ...typedArgs: unknown[]) => number;
  pipe2: (fds: Int32Array, flags: number) => number;
  socket: (domain: number, type: number, protocol: number) => number;
  bind: (fd: number, address: Buffer, length: number) => number;
  listen: (fd: number, backlog: number) => number;
  accept4: (fd: number, address: null, length: null, flags: number) => number;
  recvmsg: (fd: number, message: MessageHeader, flags: number) => number | bigint;
  ioctl: (fd: number, request: number, ...typedArgs: unknown[]) => number;
  connect: (fd: number, address: Buffer, length: number) => number;
  sendmsg: (fd: number, message: MessageHeader, flags: number) => number | bigint;
  setsockopt: (fd: number, level: number, name: number, value: Buffer, length: number) => number;
}

/** struct msghdr as koffi marshals it: buffers are passed by pointer, lengths come back. */
interface MessageHeader {
  msg_name: null;
  msg_namelen: number;
  msg_iov: { iov_base: Buffer; iov_len: number }[];
  msg_iovlen: number;
  msg_control: Buffer | null;
  msg_controllen: number;
  msg_flags: number;
}

let ioBindings: IoBindings | undefined;

function ioLibc(): IoBindings {
  if (ioBindings) return ioBindings;
  const { koffi } = libc();
  const lib = koffi.load('libc.so.6');
  koffi.struct('kuasar_iovec', { iov_base: 'void *', iov_len: 'size_t' });
  koffi.struct('kuasar_msghdr', {
    msg_name: 'void *',
    msg_namelen: 'uint32_t',
    msg_iov: 'kuasar_iovec *',
    msg_iovlen: 'size_t',
    msg_control: 'void *',
    msg_controllen: 'size_t',
    msg_flags: 'int',
  });
  koffi.struct('kuasar_winsize', { ws_row: 'uint16_t', ws_col: 'uint16_t', ws_xpixel: 'uint16_t', ws_ypixel: 'uint16_t' });
  ioBindings = {
    fcntl: lib.func('int fcntl(int fd, int cmd, ...)'),
    pipe2: lib.func('int pipe2(_Out_ int *fds, int flags)'),
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    bind: lib.func('int bind(int fd, const void *address, uint32_t length)'),
    listen: lib.func('int listen(int fd, int backlog)'),
    accept4: lib.func('int accept4(int fd, void *address, void *length, int flags)'),
    recvmsg: lib.func('long recvmsg(int fd, _Inout_ kuasar_msghdr *message, int flags)'),
    ioctl: lib.func('int ioctl(int fd, unsigned long request, ...)'),
    connect: lib.func('int connect(int fd, const void *address, uint32_t length)'),
    sendmsg: lib.func('long sendmsg(int fd, const kuasar_msghdr *message, int flags)'),
    setsockopt: lib.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t length)'),
  };
  return ioBindings;
}

/** open(2)/fcntl(2) flags, as on Linux x86_64 and aarch64. */
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const F_GETFL = 3;
const F_SETFL = 4;

/** Makes reads and writes on `fd` block (or not); the flag belongs to the open file, shared by dups. */
/**
 * Gives the memory the C allocator holds free back to the kernel, from every arena (glibc's
 * malloc_trim). Threads allocate from arenas of their own, and what an ended thread freed stays
 * in them otherwise. True when some memory was released.
 */
export function releaseFreeMemory(): boolean {
  return libc().mallocTrim(0) === 1;
}

export function setNonBlocking(fd: number, nonBlocking: boolean): void {
  const flags = check(`fcntl(${fd}, F_GETFL)`, ioLibc().fcntl(fd, F_GETFL, 'int', 0));
  const wanted = nonBlocking ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
  if (wanted !== flags) check(`fcntl(${fd}, F_SETFL)`, ioLibc().fcntl(fd, F_SETFL, 'int', wanted));
}

/** pipe2(2) with O_CLOEXEC: a child gets an end only where it is given as stdio. */
export function pipe(): { read: number; write: number } {
  const fds = new Int32Array(2);
  check('pipe2', ioLibc().pipe2(fds, O_CLOEXEC));
  return { read: fds[0]!, write: fds[1]! };
}

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = O_NONBLOCK;
const SOCK_CLOEXEC = O_CLOEXEC;
const MSG_DONTWAIT = 0x40;
const MSG_CMSG_CLOEXEC = 0x40000000;
/** sizeof(struct sockaddr_un): a 2-byte family, then sun_path. */
const SOCKADDR_UN_SIZE = 110;

function unixAddress(path: string): Buffer {
  const address = Buffer.alloc(SOCKADDR_UN_SIZE);
  address.writeUInt16LE(AF_UNIX, 0);
  const written = address.write(path, 2, 'utf8');
  if (written !== Buffer.byteLength(path) || written >= SOCKADDR_UN_SIZE - 2) {
    throw new ErrnoError(`unix socket address ${path}`, osConstants.errno.ENAMETOOLONG);
  }
  return address;
}

/**
 * A listening unix stream socket at `path` (which must not exist), non-blocking, so that
 * `acceptNow` never waits. Returns its fd; the caller closes it and removes the file.
 */
export function listenUnix(path: string, backlog = 1): number {
  const fd = check('socket(AF_UNIX)', ioLibc().socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  try {
    const address = unixAddress(path);
    check(`bind ${path}`, ioLibc().bind(fd, address, address.length));
    check(`listen ${path}`, ioLibc().listen(fd, backlog));
    return fd;
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}

/** accept4(2) without waiting: the connection's fd, or undefined when nobody has connected. */
export function acceptNow(listenFd: number): number | undefined {
  try {
    return checkRetrying(`accept4(${listenFd})`, () => ioLibc().accept4(listenFd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC));
  } catch (err) {
    if (hasErrnoCode(err, 'EAGAIN', 'EWOULDBLOCK')) return undefined;
    throw err;
  }
}

/**
 * recvmsg(2) without waiting, with room for ancillary data. Returns the bytes and the control
 * messages as received (parse them with linux/cmsg.ts), or undefined when nothing is queued.
 * Passed descriptors arrive close-on-exec.
 */
export function receiveMessageNow(fd: number, dataBytes: number, controlBytes: number): ReceivedMessage | undefined {
  try {
    return receive(fd, dataBytes, controlBytes, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  } catch (err) {
    if (hasErrnoCode(err, 'EAGAIN', 'EWOULDBLOCK')) return undefined;
    throw err;
  }
}

/**
 * recvmsg(2) that waits as the socket does (a blocking socket waits, up to its SO_RCVTIMEO, then
 * fails with EAGAIN). An empty `data` on a stream or seqpacket socket means the peer hung up.
 * Passed descriptors arrive close-on-exec.
 */
export function receiveMessage(fd: number, dataBytes: number, controlBytes: number): ReceivedMessage {
  return receive(fd, dataBytes, controlBytes, MSG_CMSG_CLOEXEC);
}

export interface ReceivedMessage {
  data: Buffer;
  /** The control messages as received: parse them with linux/cmsg.ts. */
  control: Buffer;
  /** The message did not fit the data buffer (MSG_TRUNC): the rest of it is lost. */
  truncated: boolean;
  /**
   * Control data was lost (MSG_CTRUNC): the control buffer was too small, or a passed
   * descriptor could not be installed because this process is at its RLIMIT_NOFILE (the kernel
   * then drops that descriptor, and every one after it).
   */
  controlTruncated: boolean;
}

const MSG_CTRUNC = 0x8;
const MSG_TRUNC = 0x20;

function receive(fd: number, dataBytes: number, controlBytes: number, flags: number): ReceivedMessage {
  const data = Buffer.alloc(dataBytes);
  const control = Buffer.alloc(controlBytes);
  const message: MessageHeader = {
    msg_name: null,
    msg_namelen: 0,
    msg_iov: [{ iov_base: data, iov_len: dataBytes }],
    msg_iovlen: 1,
    msg_control: control,
    msg_controllen: controlBytes,
    msg_flags: 0,
  };
  const received = checkRetrying(`recvmsg(${fd})`, () => ioLibc().recvmsg(fd, message, flags));
  return {
    data: data.subarray(0, received),
    control: control.subarray(0, Number(message.msg_controllen)),
    truncated: (message.msg_flags & MSG_TRUNC) !== 0,
    controlTruncated: (message.msg_flags & MSG_CTRUNC) !== 0,
  };
}

const MSG_NOSIGNAL = 0x4000;

/**
 * sendmsg(2) of `data` with `fds` passed along (SCM_RIGHTS; the receiver gets duplicates, ours
 * stay open). `control` is the control buffer for them (linux/cmsg.ts rightsMessage). A peer that
 * is gone is an EPIPE ErrnoError, not a SIGPIPE. Fails with EMSGSIZE rather than sending part of
 * the data (which only a stream socket could do).
 */
export function sendMessage(fd: number, data: Uint8Array, control?: Buffer): void {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const message: MessageHeader = {
    msg_name: null,
    msg_namelen: 0,
    msg_iov: [{ iov_base: bytes, iov_len: bytes.length }],
    msg_iovlen: 1,
    msg_control: control ?? null,
    msg_controllen: control?.length ?? 0,
    msg_flags: 0,
  };
  // An interrupted sendmsg sent nothing: a datagram or seqpacket message goes whole or not at
  // all, and a stream socket that sent part of the data returns the count instead of EINTR.
  const sent = checkRetrying(`sendmsg(${fd})`, () => ioLibc().sendmsg(fd, message, MSG_NOSIGNAL));
  if (sent !== bytes.length) throw new ErrnoError(`sendmsg(${fd}): ${sent} of ${bytes.length} bytes`, osConstants.errno.EMSGSIZE);
}

const SOCK_SEQPACKET = 5;

/**
 * A blocking unix socket connected to `path`: `seqpacket` keeps message boundaries (one
 * sendMessage, one receiveMessage). Close it with closeFd.
 */
export function connectUnix(path: string, type: 'stream' | 'seqpacket'): number {
  const kind = type === 'seqpacket' ? SOCK_SEQPACKET : SOCK_STREAM;
  const fd = check('socket(AF_UNIX)', ioLibc().socket(AF_UNIX, kind | SOCK_CLOEXEC, 0));
  try {
    const address = unixAddress(path);
    // An interrupted connect of a unix socket leaves it unconnected (unix_stream_connect undoes
    // its queued request), so connecting again is the same request, not a second one.
    checkRetrying(`connect ${path}`, () => ioLibc().connect(fd, address, address.length));
    return fd;
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}

const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SO_SNDTIMEO = 21;

/** Bounds how long a blocking send or receive on `fd` waits; it then fails with EAGAIN. */
export function setSocketTimeouts(fd: number, timeoutMs: number): void {
  // struct timeval { time_t tv_sec; suseconds_t tv_usec; }: two 64-bit fields.
  const timeval = Buffer.alloc(16);
  timeval.writeBigInt64LE(BigInt(Math.floor(timeoutMs / 1000)), 0);
  timeval.writeBigInt64LE(BigInt((timeoutMs % 1000) * 1000), 8);
  for (const option of [SO_RCVTIMEO, SO_SNDTIMEO]) {
    check(`setsockopt(${fd}, ${option === SO_RCVTIMEO ? 'SO_RCVTIMEO' : 'SO_SNDTIMEO'})`, ioLibc().setsockopt(fd, SOL_SOCKET, option, timeval, timeval.length));
  }
}

const TIOCSWINSZ = 0x5414;

/** Sets a terminal's window size (the kernel sends SIGWINCH to its foreground process group). */
export function setWindowSize(fd: number, size: { rows: number; columns: number }): void {
  const winsize = { ws_row: size.rows, ws_col: size.columns, ws_xpixel: 0, ws_ypixel: 0 };
  check(`ioctl(${fd}, TIOCSWINSZ)`, ioLibc().ioctl(fd, TIOCSWINSZ, 'kuasar_winsize *', winsize));
}
