// libc through koffi, for the few calls Node has no API for. Each job has its own module here
// (files.ts, sockets.ts, processes.ts, mounts.ts, namespaces.ts), whose functions are declared
// on the first call of one of them: koffi and libc load then, once, so importing a module costs
// nothing on hosts or in tests that never call into it. Every failing call throws an ErrnoError
// that names the operation and the errno (EINVAL, ECHILD, ...).
//
// Signals: kuasard handles SIGCHLD (linux/reaper.ts), many of them when containers start and
// end. Node installs its signal handlers with SA_RESTART, which restarts most interrupted calls,
// but not all: signal(7) lists socket calls on a socket with SO_RCVTIMEO or SO_SNDTIMEO (the fd
// keeper's connection has both), poll and others as never restarted. Every call that can sleep
// therefore goes through checkRetrying, which calls it again on EINTR: recvmsg, sendmsg,
// connect, accept4, waitpid, and poll, which reports EINTR for a pending signal even with a
// zero timeout (an uncaught one once ended kuasard: the fd keeper's watch polls every second).
// The others never sleep (prctl, socket, bind, listen, pipe2, fcntl without locks, ioctl
// TIOCSWINSZ, setsockopt, setns, unshare, sethostname), or sleep uninterruptibly on local
// filesystems (mount, umount2). close is
// never retried: Linux releases the descriptor even when close reports EINTR, and a second
// close could hit a descriptor another part of the process has opened since.

import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';

// koffi's types only, at compile time; the module itself is required lazily below.
type Koffi = typeof import('koffi');
type Library = ReturnType<Koffi['load']>;

let loaded: { koffi: Koffi; lib: Library } | undefined;

function load(): { koffi: Koffi; lib: Library } {
  if (!loaded) {
    const koffi = createRequire(import.meta.url)('koffi') as Koffi;
    loaded = { koffi, lib: koffi.load('libc.so.6') };
  }
  return loaded;
}

/**
 * A group of libc functions (and the structs they take), declared by `declare` when the group is
 * first asked for, and kept.
 */
export function libcGroup<T>(declare: (lib: Library, koffi: Koffi) => T): () => T {
  let group: T | undefined;
  return () => {
    if (group === undefined) {
      const { lib, koffi } = load();
      group = declare(lib, koffi);
    }
    return group;
  };
}

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

const errnoNames = new Map<number, string>(Object.entries(osConstants.errno).map(([name, value]) => [value, name] as [number, string]));

export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

/** Runs a libc call that returns -1 on failure and turns the failure into an ErrnoError. */
export function check(operation: string, result: number | bigint): number {
  const value = Number(result);
  if (value === -1) throw new ErrnoError(operation, load().koffi.errno());
  return value;
}

const EINTR = osConstants.errno.EINTR;

/**
 * check() for a call that may sleep: `call` runs again as long as a signal interrupts it
 * (EINTR), so that only a real failure is reported (see the header comment).
 */
export function checkRetrying(operation: string, call: () => number | bigint): number {
  for (;;) {
    const value = Number(call());
    if (value !== -1) return value;
    const errno = load().koffi.errno();
    if (errno !== EINTR) throw new ErrnoError(operation, errno);
  }
}
