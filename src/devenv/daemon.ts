// A long-lived child process (containerd, kuasard) whose output goes to a log file, and the
// waiting that goes with it: for readiness, with the log's tail in the error, and for the exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { readProcess } from './processes.js';

/** PATH for the daemons: the tools they run (runc, the shims, iptables...) live in sbin too. */
const DAEMON_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface DaemonExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class Daemon {
  readonly name: string;
  readonly pid: number;
  /** Start time (from /proc) of the process: with the pid, it names this very process. */
  readonly startTime: string;
  readonly logFile: string;
  /** Settles when the process has exited (and been reaped). */
  readonly exited: Promise<DaemonExit>;
  private exit: DaemonExit | undefined;

  private constructor(name: string, child: ChildProcess, logFile: string) {
    this.name = name;
    if (child.pid === undefined) throw new Error(`${name} could not be started`);
    this.pid = child.pid;
    this.startTime = readProcess(child.pid)?.startTime ?? '';
    this.logFile = logFile;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
  }

  /** Starts `command args`, appending its stdout and stderr to logFile. */
  static async start(name: string, command: string, args: readonly string[], logFile: string): Promise<Daemon> {
    const log = openSync(logFile, 'a', 0o600);
    try {
      const child = spawn(command, args, {
        stdio: ['ignore', log, log],
        env: { ...process.env, PATH: DAEMON_PATH },
      });
      const spawned = await new Promise<Error | undefined>((resolve) => {
        child.once('spawn', () => resolve(undefined));
        child.once('error', resolve);
      });
      if (spawned) throw new Error(`${name} could not be started (${command}): ${spawned.message}`);
      return new Daemon(name, child, logFile);
    } finally {
      closeSync(log);
    }
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /**
   * Polls `ready` until it resolves true. Fails early when the daemon exits, and after
   * timeoutMs with the last lines of its log.
   */
  async waitUntilReady(what: string, ready: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    while (Date.now() < deadline) {
      if (!this.running) {
        throw new Error(`${this.name} exited (${describeExit(this.exit)}) before ${what}; last lines of its log:\n${this.logTail()}`);
      }
      try {
        if (await ready()) return;
      } catch (err) {
        lastError = err;
      }
      await sleep(100);
    }
    const cause = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
    throw new Error(
      `${this.name} did not come up within ${timeoutMs / 1000} s: ${what} never happened${cause}; last lines of its log:\n${this.logTail()}`,
    );
  }

  /** Kills it at once with SIGKILL, as a crash would end it; resolves once the process is gone. */
  async crash(): Promise<DaemonExit> {
    if (this.running) process.kill(this.pid, 'SIGKILL');
    return this.exited;
  }

  /** SIGTERM, then SIGKILL after graceMs; resolves once the process is gone. */
  async stop(graceMs = 5_000): Promise<DaemonExit> {
    if (!this.running) return this.exited;
    process.kill(this.pid, 'SIGTERM');
    const timer = sleep(graceMs, undefined, { ref: false }).then(() => 'timeout' as const);
    if ((await Promise.race([this.exited, timer])) === 'timeout' && this.running) process.kill(this.pid, 'SIGKILL');
    return this.exited;
  }

  /** Why it is not running, with the last lines of its log; undefined while it runs. */
  exitReport(lines = 20): string | undefined {
    if (this.running) return undefined;
    return `${this.name} has exited (${describeExit(this.exit)}); the last lines of its log:\n${this.logTail(lines)}`;
  }

  logTail(lines = 30): string {
    return tailOfFile(this.logFile, lines);
  }
}

export function tailOfFile(path: string, lines: number): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function describeExit(exit: DaemonExit | undefined): string {
  if (!exit) return 'still running';
  return exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`;
}
