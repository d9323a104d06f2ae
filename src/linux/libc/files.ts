// File descriptors through libc: close, duplicates, the O_NONBLOCK flag, pipes, a poll that
// never waits, one that waits on a thread-pool thread, and a terminal's window size.

import { check, checkRetrying, libcGroup } from './binding.js';

interface PollFd {
  fd: number;
  events: number;
  revents: number;
}

interface FileCalls {
  close: (fd: number) => number;
  fcntl: (fd: number, cmd: number, ...typedArgs: unknown[]) => number;
  pipe2: (fds: Int32Array, flags: number) => number;
  poll: ((fds: PollFd, nfds: number, timeoutMs: number) => number) & {
    async: (fds: PollFd, nfds: number, timeoutMs: number, done: (err: unknown, result: number) => void) => void;
  };
  ioctl: (fd: number, request: number, ...typedArgs: unknown[]) => number;
}

const libc = libcGroup<FileCalls>((lib, koffi) => {
  koffi.struct('kuasar_pollfd', { fd: 'int', events: 'short', revents: 'short' });
  koffi.struct('kuasar_winsize', { ws_row: 'uint16_t', ws_col: 'uint16_t', ws_xpixel: 'uint16_t', ws_ypixel: 'uint16_t' });
  return {
    close: lib.func('int close(int fd)'),
    fcntl: lib.func('int fcntl(int fd, int cmd, ...)'),
    pipe2: lib.func('int pipe2(_Out_ int *fds, int flags)'),
    poll: lib.func('int poll(_Inout_ kuasar_pollfd *fds, unsigned long nfds, int timeout)'),
    ioctl: lib.func('int ioctl(int fd, unsigned long request, ...)'),
  };
});

/** open(2)/fcntl(2) flags, as on Linux x86_64 and aarch64. */
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
const F_GETFL = 3;
const F_SETFL = 4;
const F_DUPFD_CLOEXEC = 1030;

export function closeFd(fd: number): void {
  check(`close(${fd})`, libc().close(fd));
}

/** A second descriptor for the open file `fd` names (close-on-exec), to be closed on its own. */
export function duplicateFd(fd: number): number {
  return check(`fcntl(${fd}, F_DUPFD_CLOEXEC)`, libc().fcntl(fd, F_DUPFD_CLOEXEC, 'int', 0));
}

/** Makes reads and writes on `fd` block (or not); the flag belongs to the open file, shared by dups. */
export function setNonBlocking(fd: number, nonBlocking: boolean): void {
  const flags = check(`fcntl(${fd}, F_GETFL)`, libc().fcntl(fd, F_GETFL, 'int', 0));
  const wanted = nonBlocking ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
  if (wanted !== flags) check(`fcntl(${fd}, F_SETFL)`, libc().fcntl(fd, F_SETFL, 'int', wanted));
}

/** pipe2(2) with O_CLOEXEC: a child gets an end only where it is given as stdio. */
export function pipe(): { read: number; write: number } {
  const fds = new Int32Array(2);
  check('pipe2', libc().pipe2(fds, O_CLOEXEC));
  return { read: fds[0]!, write: fds[1]! };
}

/** poll(2) events. */
export const POLLIN = 0x1;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLRDHUP = 0x2000;

/** poll(2) of one descriptor without waiting (it cannot be interrupted): the events it reports now. */
export function pollNow(fd: number, events: number): number {
  const fds = { fd, events, revents: 0 };
  // Even with a zero timeout, poll fails with EINTR when a signal (SIGCHLD) is pending.
  checkRetrying(`poll(${fd})`, () => libc().poll(fds, 1, 0));
  return fds.revents;
}

/**
 * poll(2) of one descriptor on a thread of libuv's pool (koffi's asynchronous call), waiting up
 * to `timeoutMs`: the events it reports, 0 after the time-out or when a signal interrupted it.
 * For a descriptor libuv cannot watch (a character device such as a virtio-serial port). Each
 * pending call holds a pool thread.
 */
export function pollWaiting(fd: number, events: number, timeoutMs: number): Promise<number> {
  const fds = { fd, events, revents: 0 };
  return new Promise((resolve, reject) => {
    libc().poll.async(fds, 1, timeoutMs, (err, result) => {
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(result > 0 ? fds.revents : 0);
    });
  });
}

const TIOCSWINSZ = 0x5414;

/** Sets a terminal's window size (the kernel sends SIGWINCH to its foreground process group). */
export function setWindowSize(fd: number, size: { rows: number; columns: number }): void {
  const winsize = { ws_row: size.rows, ws_col: size.columns, ws_xpixel: 0, ws_ypixel: 0 };
  check(`ioctl(${fd}, TIOCSWINSZ)`, libc().ioctl(fd, TIOCSWINSZ, 'kuasar_winsize *', winsize));
}
