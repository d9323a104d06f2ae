// Typed bindings to the few libc calls Node has no API for (prctl, waitpid, mount, umount2,
// pidfd_open, poll). koffi and libc are loaded on first use, so importing this module costs
// nothing on hosts or in tests that never call into it. Every failing call throws an ErrnoError
// that names the operation and the errno (EINVAL, ECHILD, ...).

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
  };
  return bindings;
}

/** Runs a libc call that returns -1 on failure and turns the failure into an ErrnoError. */
function check(operation: string, result: number | bigint): number {
  const value = Number(result);
  if (value === -1) throw new ErrnoError(operation, libc().koffi.errno());
  return value;
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
  for (;;) {
    try {
      const waited = check(`waitpid(${pid})`, libc().waitpid(pid, status, options));
      if (waited === 0) return undefined;
      return { pid: waited, status: decodeWaitStatus(status[0]) };
    } catch (err) {
      if (!hasErrnoCode(err, 'EINTR')) throw err;
    }
  }
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

/** pidfd_open(2): a file descriptor that refers to this very process, immune to pid reuse. */
export function pidfdOpen(pid: number): number {
  return check(`pidfd_open(${pid})`, libc().syscall(SYS_pidfd_open, 'int', pid, 'unsigned int', 0));
}

/** True once the process behind a pidfd has exited (the pidfd polls readable). Never blocks. */
export function pidfdHasExited(pidfd: number): boolean {
  const fds = { fd: pidfd, events: POLLIN, revents: 0 };
  return check(`poll(pidfd ${pidfd})`, libc().poll(fds, 1, 0)) > 0;
}

export function closeFd(fd: number): void {
  check(`close(${fd})`, libc().close(fd));
}
