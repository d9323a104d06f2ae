// DebugExec (`kuasar exec`): a command run in the guest itself for an operator's debugging,
// outside every container: as the agent runs (root, the guest's own namespaces), from /, with
// no stdin. Its output is kept up to a bound (the rest is read and dropped, so the command never
// blocks on a full pipe), its whole process group is killed at its time-out or when the host
// gives up the call, and the call is answered once it has ended.
import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { failedPrecondition, invalidArgument, notFound } from '../../base/errors.js';

/** What is kept of each of stdout and stderr. */
export const DEBUG_EXEC_MAX_OUTPUT = 1024 * 1024;
export const DEBUG_EXEC_DEFAULT_TIMEOUT_MS = 30_000;
export const DEBUG_EXEC_MAX_TIMEOUT_MS = 10 * 60_000;
/** argv's size, all arguments together. */
const MAX_ARGV_BYTES = 64 * 1024;
/** busybox's applets are in /bin; node in /usr/bin, runc in /usr/sbin (guest/image/rootfs.ts). */
const GUEST_PATH = '/bin:/sbin:/usr/bin:/usr/sbin';
/**
 * How long, once the command has exited, its output may stay open (a child it left in the
 * background holds the pipes): past it the call answers with what came, the child runs on.
 */
const OUTPUT_GRACE_MS = 1_000;

export interface DebugExecResult {
  stdout: Buffer;
  stderr: Buffer;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  /** The exit code, or 128 + the signal that killed it. */
  exitStatus: number;
  timedOut: boolean;
}

/** The request's time-out: 0 takes the default, more than the cap is capped. */
export function debugExecTimeout(timeoutMs: number): number {
  return timeoutMs === 0 ? DEBUG_EXEC_DEFAULT_TIMEOUT_MS : Math.min(timeoutMs, DEBUG_EXEC_MAX_TIMEOUT_MS);
}

function checkArgv(argv: readonly string[]): void {
  if (argv.length === 0 || argv[0] === '') throw invalidArgument('debug exec: argv names no program');
  if (argv.some((arg) => arg.includes('\0'))) throw invalidArgument('debug exec: an argument holds a NUL byte');
  const bytes = argv.reduce((n, arg) => n + Buffer.byteLength(arg) + 1, 0);
  if (bytes > MAX_ARGV_BYTES) throw invalidArgument(`debug exec: argv has ${bytes} bytes, at most ${MAX_ARGV_BYTES}`);
}

/** One output stream, kept up to DEBUG_EXEC_MAX_OUTPUT. */
class BoundedOutput {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  truncated = false;

  add(chunk: Buffer): void {
    const room = DEBUG_EXEC_MAX_OUTPUT - this.size;
    if (chunk.length > room) this.truncated = true;
    const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (kept.length === 0) return;
    this.chunks.push(kept);
    this.size += kept.length;
  }

  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

export function debugExec(argv: readonly string[], timeoutMs: number, abort?: AbortSignal): Promise<DebugExecResult> {
  checkArgv(argv);
  const limitMs = debugExecTimeout(timeoutMs);
  return new Promise((resolve, reject) => {
    // Its own process group: what it starts is killed with it at the time-out.
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: '/',
      env: { PATH: GUEST_PATH, HOME: '/root' },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const stdout = new BoundedOutput();
    const stderr = new BoundedOutput();
    child.stdout.on('data', (chunk: Buffer) => stdout.add(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.add(chunk));
    let timedOut = false;
    let graceTimer: NodeJS.Timeout | undefined;
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // The group has gone already.
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, limitMs);
    const onAbort = () => killGroup();
    abort?.addEventListener('abort', onAbort, { once: true });
    const done = () => {
      clearTimeout(timer);
      clearTimeout(graceTimer);
      abort?.removeEventListener('abort', onAbort);
    };
    child.once('error', (err: NodeJS.ErrnoException) => {
      done();
      if (err.code === 'ENOENT') reject(notFound(`program ${JSON.stringify(argv[0])} in the guest (PATH ${GUEST_PATH})`));
      else reject(failedPrecondition(`cannot run ${JSON.stringify(argv[0])} in the guest: ${err.message}`));
    });
    child.once('exit', () => {
      graceTimer = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
      }, OUTPUT_GRACE_MS);
    });
    child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
      // A program that could not be started is told by 'error'.
      if (child.pid === undefined) return;
      done();
      resolve({
        stdout: stdout.bytes(),
        stderr: stderr.bytes(),
        stdoutTruncated: stdout.truncated,
        stderrTruncated: stderr.truncated,
        exitStatus: signal ? 128 + (constants.signals[signal] ?? 0) : (code ?? 0),
        timedOut,
      });
    });
  });
}
