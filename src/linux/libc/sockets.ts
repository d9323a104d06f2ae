// Unix sockets through libc, where Node's net module cannot go: a listener and connections as
// bare descriptors (to hand to the fd keeper, or to receive a console's pty on), messages that
// pass descriptors along (SCM_RIGHTS: linux/cmsg.ts lays out their control data), datagrams
// (systemd's notification socket), send and receive time-outs, and whether a peer has hung up.
// An address that starts with '@' names a socket in the abstract namespace.

import { constants as osConstants } from 'node:os';

import { SOL_SOCKET } from '../cmsg.js';
import { check, checkRetrying, ErrnoError, hasErrnoCode, libcGroup } from './binding.js';
import { closeFd, O_CLOEXEC, O_NONBLOCK, pollNow, POLLERR, POLLHUP, POLLRDHUP } from './files.js';

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

interface SocketCalls {
  socket: (domain: number, type: number, protocol: number) => number;
  bind: (fd: number, address: Buffer, length: number) => number;
  listen: (fd: number, backlog: number) => number;
  accept4: (fd: number, address: null, length: null, flags: number) => number;
  connect: (fd: number, address: Buffer, length: number) => number;
  recvmsg: (fd: number, message: MessageHeader, flags: number) => number | bigint;
  sendmsg: (fd: number, message: MessageHeader, flags: number) => number | bigint;
  setsockopt: (fd: number, level: number, name: number, value: Buffer, length: number) => number;
}

const libc = libcGroup<SocketCalls>((lib, koffi) => {
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
  return {
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    bind: lib.func('int bind(int fd, const void *address, uint32_t length)'),
    listen: lib.func('int listen(int fd, int backlog)'),
    accept4: lib.func('int accept4(int fd, void *address, void *length, int flags)'),
    connect: lib.func('int connect(int fd, const void *address, uint32_t length)'),
    recvmsg: lib.func('long recvmsg(int fd, _Inout_ kuasar_msghdr *message, int flags)'),
    sendmsg: lib.func('long sendmsg(int fd, const kuasar_msghdr *message, int flags)'),
    setsockopt: lib.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t length)'),
  };
});

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOCK_SEQPACKET = 5;
const SOCK_NONBLOCK = O_NONBLOCK;
const SOCK_CLOEXEC = O_CLOEXEC;
const MSG_CTRUNC = 0x8;
const MSG_TRUNC = 0x20;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
const SO_RCVTIMEO = 20;
const SO_SNDTIMEO = 21;
/** sizeof(struct sockaddr_un): a 2-byte family, then sun_path. */
const SOCKADDR_UN_SIZE = 110;

/**
 * struct sockaddr_un for `path`, as long as bind and connect must be told it is. A path in the
 * file system ends at its NUL; an abstract name ('@name' here, a NUL byte then the name in the
 * address) has no terminator, so every byte up to the length given is part of it.
 */
function unixAddress(path: string): Buffer {
  const abstract = path.startsWith('@');
  const name = abstract ? Buffer.concat([Buffer.of(0), Buffer.from(path.slice(1), 'utf8')]) : Buffer.from(path, 'utf8');
  if (name.length >= SOCKADDR_UN_SIZE - 2) throw new ErrnoError(`unix socket address ${path}`, osConstants.errno.ENAMETOOLONG);
  const address = Buffer.alloc(abstract ? 2 + name.length : SOCKADDR_UN_SIZE);
  address.writeUInt16LE(AF_UNIX, 0);
  name.copy(address, 2);
  return address;
}

/**
 * A listening unix stream socket at `path` (which must not exist), non-blocking, so that
 * `acceptNow` never waits. Returns its fd; the caller closes it and removes the file.
 */
export function listenUnix(path: string, backlog = 1): number {
  const fd = check('socket(AF_UNIX)', libc().socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  try {
    const address = unixAddress(path);
    check(`bind ${path}`, libc().bind(fd, address, address.length));
    check(`listen ${path}`, libc().listen(fd, backlog));
    return fd;
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}

/** accept4(2) without waiting: the connection's fd, or undefined when nobody has connected. */
export function acceptNow(listenFd: number): number | undefined {
  try {
    return checkRetrying(`accept4(${listenFd})`, () => libc().accept4(listenFd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC));
  } catch (err) {
    if (hasErrnoCode(err, 'EAGAIN', 'EWOULDBLOCK')) return undefined;
    throw err;
  }
}

/**
 * A unix datagram socket bound to `path` (which must not exist), non-blocking: receiveMessageNow
 * reads it. kuasard only sends datagrams (sendDatagram); the receiving end is systemd's, or a
 * test's standing in for it.
 */
export function bindUnixDatagram(path: string): number {
  const fd = check('socket(AF_UNIX, SOCK_DGRAM)', libc().socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  try {
    const address = unixAddress(path);
    check(`bind ${path}`, libc().bind(fd, address, address.length));
    return fd;
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}

/**
 * Sends `data` as one datagram to the unix datagram socket at `path`, from a socket opened for
 * it and closed again (as sd_notify does: the receiver may have been replaced since the last
 * message). Never waits: a receiver whose queue is full fails it with EAGAIN.
 */
export function sendDatagram(path: string, data: Uint8Array): void {
  const fd = check('socket(AF_UNIX, SOCK_DGRAM)', libc().socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  try {
    const address = unixAddress(path);
    checkRetrying(`connect ${path}`, () => libc().connect(fd, address, address.length));
    sendMessage(fd, data);
  } finally {
    closeFd(fd);
  }
}

/**
 * A blocking unix socket connected to `path`: `seqpacket` keeps message boundaries (one
 * sendMessage, one receiveMessage). Close it with closeFd.
 */
export function connectUnix(path: string, type: 'stream' | 'seqpacket'): number {
  const kind = type === 'seqpacket' ? SOCK_SEQPACKET : SOCK_STREAM;
  const fd = check('socket(AF_UNIX)', libc().socket(AF_UNIX, kind | SOCK_CLOEXEC, 0));
  try {
    const address = unixAddress(path);
    // An interrupted connect of a unix socket leaves it unconnected (unix_stream_connect undoes
    // its queued request), so connecting again is the same request, not a second one.
    checkRetrying(`connect ${path}`, () => libc().connect(fd, address, address.length));
    return fd;
  } catch (err) {
    closeFd(fd);
    throw err;
  }
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
  const received = checkRetrying(`recvmsg(${fd})`, () => libc().recvmsg(fd, message, flags));
  return {
    data: data.subarray(0, received),
    control: control.subarray(0, Number(message.msg_controllen)),
    truncated: (message.msg_flags & MSG_TRUNC) !== 0,
    controlTruncated: (message.msg_flags & MSG_CTRUNC) !== 0,
  };
}

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
  const sent = checkRetrying(`sendmsg(${fd})`, () => libc().sendmsg(fd, message, MSG_NOSIGNAL));
  if (sent !== bytes.length) throw new ErrnoError(`sendmsg(${fd}): ${sent} of ${bytes.length} bytes`, osConstants.errno.EMSGSIZE);
}

/** Bounds how long a blocking send or receive on `fd` waits; it then fails with EAGAIN. */
export function setSocketTimeouts(fd: number, timeoutMs: number): void {
  // struct timeval { time_t tv_sec; suseconds_t tv_usec; }: two 64-bit fields.
  const timeval = Buffer.alloc(16);
  timeval.writeBigInt64LE(BigInt(Math.floor(timeoutMs / 1000)), 0);
  timeval.writeBigInt64LE(BigInt((timeoutMs % 1000) * 1000), 8);
  for (const option of [SO_RCVTIMEO, SO_SNDTIMEO]) {
    check(
      `setsockopt(${fd}, ${option === SO_RCVTIMEO ? 'SO_RCVTIMEO' : 'SO_SNDTIMEO'})`,
      libc().setsockopt(fd, SOL_SOCKET, option, timeval, timeval.length),
    );
  }
}

/** True once the peer of a connected socket has closed it (or shut down its sending side). Never blocks. */
export function peerHasHungUp(fd: number): boolean {
  return (pollNow(fd, POLLRDHUP) & (POLLRDHUP | POLLHUP | POLLERR)) !== 0;
}
