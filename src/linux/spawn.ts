// A program started without forking the daemon: posix_spawn instead of Node's child_process.
//
// Why: libuv 1.46 starts a child with fork() on the main thread, which copies the page tables
// of the whole daemon first: from a 140 MiB Node a `/bin/true` took 13 ms there against 3 ms
// through posix_spawn, from a 370 MiB one 21 ms against 3 ms; `crun --version` 21 ms against
// 11 ms. glibc's posix_spawn clones with CLONE_VM|CLONE_VFORK, so its cost does not grow with
// the daemon. It suits short-lived commands such as the OCI runtime's, started by the hundred.
//
// The child gets what child_process's `detached: true` gives: a session of its own, the
// environment of process.env, descriptors 0-2 as asked (one of ours, /dev/null, or a pipe read
// here), and no other descriptor of ours; every signal at its default disposition and none
// blocked (libc/processes.ts posixSpawn).
//
// Exit: the child is reaped by its pid (linux/child-waits.ts, shared with the Reaper's
// container processes).

import net from 'node:net';
import { constants as osConstants } from 'node:os';
import type { Readable } from 'node:stream';

import { waitForChild } from './child-waits.js';
import { closeFd, pipe } from './libc/files.js';
import { posixSpawn, type WaitStatus } from './libc/processes.js';

/** What a child gets as descriptor 0: one of ours (3 or above), or /dev/null. */
export type SpawnStdin = number | 'ignore';
/** What a child gets as descriptor 1 or 2: one of ours (3 or above), /dev/null, or a pipe read here. */
export type SpawnOutput = SpawnStdin | 'pipe';

export interface ChildExit {
  /** Its exit status, or null when a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnedChild {
  pid: number;
  /** The read end of stdout's pipe, when stdout was 'pipe'. */
  stdout?: Readable;
  stderr?: Readable;
  /** Resolves once the child has exited and is reaped. */
  exited: Promise<ChildExit>;
}

const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(osConstants.signals).map(([name, number]) => [number, name as NodeJS.Signals] as [number, NodeJS.Signals]),
);

/** How a child ended, from its wait status. */
function childExit(status: WaitStatus): ChildExit {
  return { code: status.exitCode ?? null, signal: status.signal === undefined ? null : (signalNames.get(status.signal) ?? null) };
}

/** A readable stream over the read end of a pipe; it owns the descriptor. */
function pipeReader(fd: number): Readable {
  return new net.Socket({ fd, readable: true, writable: false });
}

/** What a child's output pipe yields up to its end, as text; '' for no pipe. */
export function readText(stream: Readable | undefined): Promise<string> {
  if (!stream) return Promise.resolve('');
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    // An error ends the stream too: what was read by then is what there is.
    stream.on('error', () => undefined);
    stream.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')));
  });
}

/**
 * Starts `file` (a path, or a name looked up in PATH) with `args`. Throws an ErrnoError named
 * `spawn <file>` when it cannot start (code ENOENT for a missing program, EACCES...).
 */
export function spawnChild(file: string, args: readonly string[], stdio: readonly [SpawnStdin, SpawnOutput, SpawnOutput]): SpawnedChild {
  const pipes = stdio.map((target) => (target === 'pipe' ? pipe() : undefined));
  let pid: number;
  try {
    pid = posixSpawn({
      file,
      argv: [file, ...args],
      env: Object.entries(process.env).map(([name, value]) => `${name}=${value}`),
      stdio: stdio.map((target, fd) => (target === 'ignore' ? 'null' : target === 'pipe' ? pipes[fd]!.write : target)) as [
        number | 'null',
        number | 'null',
        number | 'null',
      ],
    });
  } catch (err) {
    for (const ends of pipes) if (ends) closeFd(ends.read);
    throw err;
  } finally {
    // The child has its own copies now; ours would hold its pipes open past its exit.
    for (const ends of pipes) if (ends) closeFd(ends.write);
  }
  return {
    pid,
    ...(pipes[1] ? { stdout: pipeReader(pipes[1].read) } : {}),
    ...(pipes[2] ? { stderr: pipeReader(pipes[2].read) } : {}),
    exited: waitForChild(pid).then(childExit),
  };
}
