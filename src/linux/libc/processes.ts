// Processes through libc: the child-subreaper flag (prctl), waitpid, pidfds, and giving the
// C allocator's free memory back to the kernel.

import { check, checkRetrying, libcGroup } from './binding.js';
import { pollNow, POLLIN } from './files.js';

interface ProcessCalls {
  prctl: (option: number, a2: number, a3: number, a4: number, a5: number) => number;
  /** prctl for the options that write an int through arg2 (the PR_GET_* ones). */
  prctlGetInt: (option: number, out: [number], a3: number, a4: number, a5: number) => number;
  waitpid: (pid: number, status: [number], options: number) => number;
  syscall: (nr: number, ...typedArgs: unknown[]) => number | bigint;
  mallocTrim: (pad: number) => number;
}

const libc = libcGroup<ProcessCalls>((lib) => ({
  prctl: lib.func('int prctl(int, unsigned long, unsigned long, unsigned long, unsigned long)'),
  prctlGetInt: lib.func('int prctl(int, _Out_ int *, unsigned long, unsigned long, unsigned long)'),
  waitpid: lib.func('int waitpid(int pid, _Out_ int *status, int options)'),
  syscall: lib.func('long syscall(long number, ...)'),
  mallocTrim: lib.func('int malloc_trim(size_t pad)'),
}));

// ---- prctl ---------------------------------------------------------------------------------

const PR_SET_CHILD_SUBREAPER = 36;
const PR_GET_CHILD_SUBREAPER = 37;

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

// ---- pidfd ---------------------------------------------------------------------------------

const SYS_pidfd_open = 434; // x86_64 and aarch64 share this number (it came after the unification)

/** pidfd_open(2): a file descriptor that refers to this very process, immune to pid reuse. */
export function pidfdOpen(pid: number): number {
  return check(`pidfd_open(${pid})`, libc().syscall(SYS_pidfd_open, 'int', pid, 'unsigned int', 0));
}

/** True once the process behind a pidfd has exited (the pidfd polls readable). Never blocks. */
export function pidfdHasExited(pidfd: number): boolean {
  return (pollNow(pidfd, POLLIN) & POLLIN) !== 0;
}

// ---- memory --------------------------------------------------------------------------------

/**
 * Gives the memory the C allocator holds free back to the kernel, from every arena (glibc's
 * malloc_trim). Threads allocate from arenas of their own, and what an ended thread freed stays
 * in them otherwise. True when some memory was released.
 */
export function releaseFreeMemory(): boolean {
  return libc().mallocTrim(0) === 1;
}
