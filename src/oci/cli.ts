// One invocation of an OCI runtime CLI: the spawn, its time-out, and the error it ends in.
//
// Every command runs in a session of its own (setsid), so a terminal signal meant for the daemon
// never reaches containers, and a time-out can kill the command's whole process group.
//
// Errors: the runtime writes its errors to a JSON log (--log, --log-format json) and to stderr.
// For create and exec its stderr is the container's, so the log is the one reliable source. Each
// invocation gets a log file of its own, read on failure and removed afterwards. The messages
// are mapped to codes by the runtime's profile (profiles.ts).

import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';

import { Code, internal, RuntimeError } from '../base/errors.js';
import { timed } from '../base/stages.js';
import { readText, spawnChild, type SpawnOutput, type SpawnStdin } from '../linux/spawn.js';
import { codeForRuntimeMessage, type RuntimeProfile } from './profiles.js';
import { errorsFromLog } from './runtime-log.js';

/** A file descriptor to hand to the container's process, or 'ignore' for /dev/null. */
export type StdioTarget = number | 'ignore';

export type ProcessStdio = [StdioTarget, StdioTarget, StdioTarget];

export interface OciCliOptions {
  /** The runtime binary, by name (looked up in PATH) or path. */
  binary: string;
  profile: RuntimeProfile;
  /** Given before every command but --version (runc: --root; runsc: --root, --platform, ...). */
  globalArgs: string[];
  /** Where each invocation's log goes while it runs. */
  logDir: string;
  /** How long a command may take before it is killed. */
  timeoutMs: number;
}

export interface Invocation {
  /** The command, for error messages and the stage name ("create", "kill"). */
  operation: string;
  /** The container the command is about, for error messages. */
  id?: string;
  args: string[];
  /** Given for commands whose process outlives the runtime (create, exec): its stdio. */
  io?: ProcessStdio;
  /** Without the global arguments and --log (for --version). */
  bare?: boolean;
  /** When given, the invocation's duration is logged as stage `oci.<operation>` (debug level). */
  log?: Logger | undefined;
  /** No time-out: the command lasts as long as what it waits for (runsc wait). */
  untimed?: boolean;
  /** Aborting kills the command; the invocation then rejects with Cancelled. */
  signal?: AbortSignal | undefined;
  /** A command that runs the runtime, given the runtime and its arguments after its own (see CallOptions.launcher). */
  launcher?: readonly string[] | undefined;
}

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
  failure: string;
  ending: 'exited' | 'timed out' | 'cancelled';
}

export class OciCli {
  readonly binary: string;
  readonly profile: RuntimeProfile;
  readonly logDir: string;
  readonly timeoutMs: number;
  private readonly globalArgs: readonly string[];
  private logDirReady: Promise<unknown> | undefined;

  constructor(options: OciCliOptions) {
    this.binary = options.binary;
    this.profile = options.profile;
    this.globalArgs = [...options.globalArgs];
    this.logDir = path.resolve(options.logDir);
    this.timeoutMs = options.timeoutMs;
  }

  /** Runs the runtime once; resolves with its stdout, or rejects with a RuntimeError. */
  invoke(invocation: Invocation): Promise<string> {
    if (!invocation.log) return this.run(invocation);
    return timed(invocation.log, `oci.${invocation.operation}`, () => this.run(invocation));
  }

  private async run(invocation: Invocation): Promise<string> {
    if (invocation.signal?.aborted) throw new RuntimeError(Code.Cancelled, `${this.describe(invocation)}: cancelled`);
    const logFile = invocation.bare ? undefined : await this.newLogFile();
    const globals = logFile ? [...this.globalArgs, '--log', logFile, '--log-format', 'json'] : [];
    try {
      const outcome = await this.spawn([...globals, ...invocation.args], invocation);
      if (outcome.ending === 'timed out') {
        throw new RuntimeError(Code.DeadlineExceeded, `${this.describe(invocation)}: timed out after ${this.timeoutMs} ms`);
      }
      if (outcome.ending === 'cancelled') throw new RuntimeError(Code.Cancelled, `${this.describe(invocation)}: cancelled`);
      if (outcome.code === 0) return outcome.stdout;
      const logged = logFile ? errorsFromLog(await readFile(logFile, 'utf8').catch(() => '')) : [];
      const detail = logged.slice(-3).join('; ') || outcome.stderr.trim() || outcome.failure;
      throw new RuntimeError(codeForRuntimeMessage(detail, this.profile), `${this.describe(invocation)}: ${detail}`);
    } catch (err) {
      if (err instanceof RuntimeError) throw err;
      throw internal(`${this.describe(invocation)}: ${(err as Error).message}`, err);
    } finally {
      if (logFile) await rm(logFile, { force: true });
    }
  }

  private describe(invocation: Invocation): string {
    return `${path.basename(this.binary)} ${invocation.operation}${invocation.id ? ` ${invocation.id}` : ''}`;
  }

  private async newLogFile(): Promise<string> {
    this.logDirReady ??= mkdir(this.logDir, { recursive: true, mode: 0o700 });
    await this.logDirReady;
    return path.join(this.logDir, `${randomUUID()}.json`);
  }

  private spawn(args: string[], invocation: Invocation): Promise<Outcome> {
    // Pipes only for commands that leave nothing behind: a container holding one end of a pipe
    // would keep it open, and us waiting, for its whole life.
    const stdio: [SpawnStdin, SpawnOutput, SpawnOutput] = invocation.io ?? ['ignore', 'pipe', 'pipe'];
    const [file, ...argv] = [...(invocation.launcher ?? this.profile.launcher ?? []), this.binary, ...args];
    // Not child_process: it forks the whole daemon for each command (linux/spawn.ts).
    const child = spawnChild(file!, argv, stdio);
    let ending: Outcome['ending'] = 'exited';
    const stop = (why: Outcome['ending']): void => {
      ending = why;
      // The whole process group: a helper left holding our pipes would hold their end back too.
      // Containers are safe from this: their processes run in sessions of their own.
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // The group is gone: everything in it has exited already.
      }
    };
    const timer = invocation.untimed ? undefined : setTimeout(() => stop('timed out'), this.timeoutMs);
    const onAbort = (): void => stop('cancelled');
    invocation.signal?.addEventListener('abort', onAbort, { once: true });
    // Done when the command has exited and its pipes are drained.
    return Promise.all([child.exited, readText(child.stdout), readText(child.stderr)])
      .then(([exit, stdout, stderr]) => ({
        ending,
        code: exit.code,
        stdout,
        stderr,
        failure: exit.signal ? `killed by ${exit.signal}` : `exit status ${exit.code}`,
      }))
      .finally(() => {
        clearTimeout(timer);
        invocation.signal?.removeEventListener('abort', onAbort);
      });
  }
}
