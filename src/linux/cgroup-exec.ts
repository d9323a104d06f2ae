// Runs a program inside a cgroup from its first instruction, so that everything it (and whatever
// it forks, such as a daemon) allocates is charged there: cgroup v1 never moves the charges of a
// process's earlier pages when the process moves. Node cannot join a cgroup between fork and
// exec, so a shell does the waiting: it blocks on its stdin until it has been moved into the
// cgroup, then execs the program.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { joinCgroup, type CgroupLayout } from './cgroups.js';

export interface CgroupExecResult {
  stdout: string;
  stderr: string;
}

/** A failed run: `code` is the exit status (or the signal's name), `stderr` what it wrote. */
export class CgroupExecError extends Error {
  constructor(
    message: string,
    readonly code: number | string,
    readonly stderr: string,
  ) {
    super(message);
  }
}

/** The shell's script: wait for the word to go, then become the program. */
const HOLD_THEN_EXEC = 'read -r go && exec "$@"';

/**
 * Runs `file` with `args` in the cgroup `cgroupsPath` (made in every hierarchy whose parent
 * exists, as joinCgroup does), waits for it to exit and resolves with its output; rejects with a
 * CgroupExecError when it exits non-zero, is killed after `timeoutMs`, or cannot be moved.
 */
export async function execFileInCgroup(
  file: string,
  args: readonly string[],
  cgroupsPath: string,
  options: { timeoutMs: number; layout?: CgroupLayout },
): Promise<CgroupExecResult> {
  const child = spawn('/bin/sh', ['-c', HOLD_THEN_EXEC, 'sh', file, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  // 'close': exited, and its output read to the end (a daemon it forked has let go of the pipes).
  // It rejects when the shell could not be spawned ('error').
  const closed = once(child, 'close') as Promise<[number | null, NodeJS.Signals | null]>;
  closed.catch(() => undefined);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs);
  try {
    if (child.pid === undefined) await closed;
    try {
      await joinCgroup(cgroupsPath, child.pid!, options.layout);
    } catch (err) {
      child.kill('SIGKILL');
      await closed.catch(() => undefined);
      throw new CgroupExecError(`join cgroup ${cgroupsPath}: ${(err as Error).message}`, 'ECGROUP', '');
    }
    child.stdin.on('error', () => undefined); // the shell died first: its exit says why
    child.stdin.end('go\n');
    const [code, signal] = await closed;
    if (code === 0) return { stdout, stderr };
    throw new CgroupExecError(`${file} ended with ${signal ? `signal ${signal}` : `status ${code}`}`, code ?? signal ?? 'unknown', stderr);
  } finally {
    clearTimeout(timer);
  }
}
