// Processes through libc: the child-subreaper flag (prctl), posix_spawn, waitpid, pidfds, and
// giving the C allocator's free memory back to the kernel.

import { check, checkRetrying, ErrnoError, libcGroup } from './binding.js';
import { pollNow, POLLIN } from './files.js';

interface ProcessCalls {
  prctl: (option: number, a2: number, a3: number, a4: number, a5: number) => number;
  /** prctl for the options that write an int through arg2 (the PR_GET_* ones). */
  prctlGetInt: (option: number, out: [number], a3: number, a4: number, a5: number) => number;
  waitpid: (pid: number, status: [number], options: number) => number;
  syscall: (nr: number, ...typedArgs: unknown[]) => number | bigint;
  mallocTrim: (pad: number) => number;
  posixSpawnp: (pid: [number], file: string, actions: Buffer, attr: Buffer, argv: (string | null)[], envp: (string | null)[]) => number;
  /** The posix_spawn_file_actions_* and posix_spawnattr_* calls that take the object and ints. */
  spawnSetters: Record<'init' | 'destroy' | 'attrInit' | 'attrDestroy', (object: Buffer) => number> & {
    addDup2: (actions: Buffer, fd: number, newFd: number) => number;
    addOpen: (actions: Buffer, fd: number, path: string, flags: number, mode: number) => number;
    addClosefrom: (actions: Buffer, from: number) => number;
    setFlags: (attr: Buffer, flags: number) => number;
    setSigDefault: (attr: Buffer, set: Buffer) => number;
    setSigMask: (attr: Buffer, set: Buffer) => number;
  };
}

const libc = libcGroup<ProcessCalls>((lib) => ({
  prctl: lib.func('int prctl(int, unsigned long, unsigned long, unsigned long, unsigned long)'),
  prctlGetInt: lib.func('int prctl(int, _Out_ int *, unsigned long, unsigned long, unsigned long)'),
  waitpid: lib.func('int waitpid(int pid, _Out_ int *status, int options)'),
  syscall: lib.func('long syscall(long number, ...)'),
  mallocTrim: lib.func('int malloc_trim(size_t pad)'),
  posixSpawnp: lib.func(
    'int posix_spawnp(_Out_ int *pid, const char *file, void *actions, void *attr, const char **argv, const char **envp)',
  ),
  spawnSetters: {
    init: lib.func('int posix_spawn_file_actions_init(void *actions)'),
    destroy: lib.func('int posix_spawn_file_actions_destroy(void *actions)'),
    attrInit: lib.func('int posix_spawnattr_init(void *attr)'),
    attrDestroy: lib.func('int posix_spawnattr_destroy(void *attr)'),
    addDup2: lib.func('int posix_spawn_file_actions_adddup2(void *actions, int fd, int newfd)'),
    addOpen: lib.func('int posix_spawn_file_actions_addopen(void *actions, int fd, const char *path, int oflag, unsigned int mode)'),
    addClosefrom: lib.func('int posix_spawn_file_actions_addclosefrom_np(void *actions, int from)'),
    setFlags: lib.func('int posix_spawnattr_setflags(void *attr, short flags)'),
    setSigDefault: lib.func('int posix_spawnattr_setsigdefault(void *attr, void *set)'),
    setSigMask: lib.func('int posix_spawnattr_setsigmask(void *attr, void *set)'),
  },
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

// ---- posix_spawn ---------------------------------------------------------------------------

// glibc's spawn objects are opaque structs, handed over as zeroed buffers at least their size
// (x86_64 and aarch64: file actions 80 bytes, attributes 336, sigset_t 128).
const SPAWN_ACTIONS_BYTES = 256;
const SPAWN_ATTR_BYTES = 512;
const SIGSET_BYTES = 128;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const POSIX_SPAWN_SETSID = 0x80;
const O_RDWR = 2;

export interface SpawnRequest {
  /** The program: a path, or a name looked up in PATH (posix_spawnp). */
  file: string;
  /** Its arguments, argv[0] included. */
  argv: readonly string[];
  /** Its environment, as NAME=value strings. */
  env: readonly string[];
  /** What the child gets as descriptors 0, 1 and 2: one of ours (3 or above), or /dev/null. */
  stdio: readonly [number | 'null', number | 'null', number | 'null'];
}

/** The posix_spawn* calls return the error number instead of setting errno. */
function checkSpawn(operation: string, result: number): void {
  if (result !== 0) throw new ErrnoError(operation, result);
}

/**
 * posix_spawnp(3) of a program in a session of its own (POSIX_SPAWN_SETSID), every signal at
 * its default disposition and none blocked (an ignored signal, as Node ignores SIGPIPE, would
 * stay ignored across exec), with only the descriptors 0-2 of `stdio` open. glibc clones with
 * CLONE_VM|CLONE_VFORK: nothing of this process is copied, and this thread resumes once the
 * child has exec'd, or with the exec's error (ENOENT, EACCES) after reaping the child itself.
 * Returns the pid; the caller must reap it.
 */
export function posixSpawn(request: SpawnRequest): number {
  const calls = libc();
  const setters = calls.spawnSetters;
  const actions = Buffer.alloc(SPAWN_ACTIONS_BYTES);
  const attr = Buffer.alloc(SPAWN_ATTR_BYTES);
  checkSpawn('posix_spawn_file_actions_init', setters.init(actions));
  try {
    checkSpawn('posix_spawnattr_init', setters.attrInit(attr));
    try {
      request.stdio.forEach((target, fd) => {
        if (target === 'null') checkSpawn('posix_spawn_file_actions_addopen', setters.addOpen(actions, fd, '/dev/null', O_RDWR, 0));
        else checkSpawn('posix_spawn_file_actions_adddup2', setters.addDup2(actions, target, fd));
      });
      checkSpawn('posix_spawn_file_actions_addclosefrom_np', setters.addClosefrom(actions, 3));
      // Every signal Linux has, 1 to 64, as bits 0 to 63: sigfillset leaves out glibc's own two
      // (32 and 33), which posix_spawn otherwise sets to SIG_IGN in the child, for good.
      const all = Buffer.alloc(SIGSET_BYTES);
      all.fill(0xff, 0, 8);
      const none = Buffer.alloc(SIGSET_BYTES);
      checkSpawn('posix_spawnattr_setsigdefault', setters.setSigDefault(attr, all));
      checkSpawn('posix_spawnattr_setsigmask', setters.setSigMask(attr, none));
      checkSpawn('posix_spawnattr_setflags', setters.setFlags(attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK));
      const pid: [number] = [0];
      checkSpawn(
        `spawn ${request.file}`,
        calls.posixSpawnp(pid, request.file, actions, attr, [...request.argv, null], [...request.env, null]),
      );
      return pid[0];
    } finally {
      setters.attrDestroy(attr);
    }
  } finally {
    setters.destroy(actions);
  }
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
