// Drives an OCI runtime CLI (runc, or crun, which takes the same commands and flags).
//
// `create` and `exec --detach` leave the container's process running after the runtime exits;
// that process inherits the stdio we give the runtime, and is re-parented to us when we are a
// child subreaper (see linux/reaper.ts), so its exit status reaches us. Every command runs in a
// session of its own (setsid), so a terminal signal meant for the daemon never reaches containers.
//
// Errors: the runtime writes its errors to a JSON log (--log, --log-format json) and to stderr.
// For create and exec its stderr is the container's, so the log is the one reliable source. Each
// invocation gets a log file of its own, read on failure and removed afterwards.

import { spawn, type StdioOptions } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';

import { Code, internal, RuntimeError } from '../base/errors.js';

export interface OciRuntimeOptions {
  /** The runtime binary, by name (looked up in PATH) or path. Default "runc". */
  binary?: string;
  /** The runtime's state directory (its --root). */
  root: string;
  /** Where each invocation's log goes while it runs. Default: "<root>-log". */
  logDir?: string;
  /** How long a command may take before it is killed. Default 60 s. */
  timeoutMs?: number;
}

/** A file descriptor to hand to the container's process, or 'ignore' for /dev/null. */
export type StdioTarget = number | 'ignore';

export interface ProcessIo {
  /** stdin, stdout, stderr of the container's process. Default: all 'ignore'. */
  stdio?: [StdioTarget, StdioTarget, StdioTarget];
  /** A unix socket to receive the pty master on, when the process has a terminal. */
  consoleSocket?: string;
}

export interface CreateOptions extends ProcessIo {
  /** Where the runtime writes the pid of the container's init. */
  pidFile: string;
}

export interface ExecOptions extends ProcessIo {
  /** Where the runtime writes the pid of the new process. */
  pidFile: string;
  /** The process to run, as an OCI Process JSON file. */
  processFile: string;
}

export interface RuntimeVersion {
  /** The binary's own name for itself ("runc", "crun"). */
  name: string;
  version: string;
  /** The OCI runtime spec version it implements. */
  spec?: string;
  commit?: string;
}

/** Which runtime error messages mean which code; the first match wins. */
const messageCodes: [RegExp, Code][] = [
  [/does not exist|container not running|no such process|process already finished/i, Code.NotFound],
  [/already exists|container with id exists/i, Code.AlreadyExists],
  [/cannot start|cannot exec|cannot pause|cannot resume|not paused/i, Code.FailedPrecondition],
  // The process asked for names no program in the container: the caller's mistake, not ours.
  [/executable file not found/i, Code.InvalidArgument],
];

export function codeForRuntimeMessage(message: string): Code {
  return messageCodes.find(([pattern]) => pattern.test(message))?.[1] ?? Code.Internal;
}

/** The messages of the error-level entries of a JSON-lines runtime log, oldest first. */
export function errorsFromLog(log: string): string[] {
  const messages: string[] = [];
  for (const line of log.split('\n')) {
    if (!line.trim()) continue;
    try {
      const entry = JSON.parse(line) as { level?: string; msg?: string };
      if ((entry.level === 'error' || entry.level === 'fatal') && entry.msg) messages.push(entry.msg);
    } catch {
      // a line that is not JSON (a partial write) carries nothing we can trust
    }
  }
  return messages;
}

export function parseVersion(output: string): RuntimeVersion {
  const head = /^(\S+) version (\S+)/m.exec(output);
  if (!head) throw internal(`unrecognised runtime version output: ${JSON.stringify(output.slice(0, 200))}`);
  const version: RuntimeVersion = { name: head[1]!, version: head[2]! };
  const spec = /^spec: (\S+)/m.exec(output)?.[1];
  const commit = /^commit: (\S+)/m.exec(output)?.[1];
  if (spec) version.spec = spec;
  if (commit) version.commit = commit;
  return version;
}

interface Invocation {
  /** The command, for error messages ("create", "kill"). */
  operation: string;
  /** The container the command is about, for error messages. */
  id?: string;
  args: string[];
  /** Given for commands whose process outlives the runtime (create, exec): its stdio. */
  io?: [StdioTarget, StdioTarget, StdioTarget];
  /** Without --root and --log (for --version). */
  bare?: boolean;
}

export class OciRuntime {
  readonly binary: string;
  readonly root: string;
  readonly logDir: string;
  private readonly timeoutMs: number;
  private logDirReady: Promise<unknown> | undefined;

  constructor(options: OciRuntimeOptions) {
    this.binary = options.binary ?? 'runc';
    this.root = path.resolve(options.root);
    this.logDir = path.resolve(options.logDir ?? `${this.root}-log`);
    this.timeoutMs = options.timeoutMs ?? 60_000;
  }

  /** Creates the container (its init waits for `start`) and returns the init's pid. */
  async create(id: string, bundle: string, options: CreateOptions): Promise<number> {
    const args = ['create', '--bundle', bundle, '--pid-file', options.pidFile];
    if (options.consoleSocket) args.push('--console-socket', options.consoleSocket);
    await this.run({ operation: 'create', id, args: [...args, id], io: options.stdio ?? ['ignore', 'ignore', 'ignore'] });
    return readPidFile(options.pidFile, 'create', id);
  }

  async start(id: string): Promise<void> {
    await this.run({ operation: 'start', id, args: ['start', id] });
  }

  /** Sends `signal` to the init, or with `all` to every process of the container. */
  async kill(id: string, signal: number | NodeJS.Signals, options: { all?: boolean } = {}): Promise<void> {
    const args = ['kill', ...(options.all ? ['--all'] : []), id, String(signal)];
    await this.run({ operation: 'kill', id, args });
  }

  /** Deletes a stopped container (with `force`, kills it first): its state, cgroups and mounts. */
  async delete(id: string, options: { force?: boolean } = {}): Promise<void> {
    await this.run({ operation: 'delete', id, args: ['delete', ...(options.force ? ['--force'] : []), id] });
  }

  /** The pids of the container's processes, as seen from the host. */
  async ps(id: string): Promise<number[]> {
    const out = await this.run({ operation: 'ps', id, args: ['ps', '--format', 'json', id] });
    return (JSON.parse(out) as number[] | null) ?? [];
  }

  /** Applies new limits to a container's cgroup; `resourcesFile` holds OCI LinuxResources JSON. */
  async update(id: string, resourcesFile: string): Promise<void> {
    await this.run({ operation: 'update', id, args: ['update', '--resources', resourcesFile, id] });
  }

  /** Freezes every process of the container (cgroup freezer). */
  async pause(id: string): Promise<void> {
    await this.run({ operation: 'pause', id, args: ['pause', id] });
  }

  async resume(id: string): Promise<void> {
    await this.run({ operation: 'resume', id, args: ['resume', id] });
  }

  /** Starts another process in a running container, detached; returns its pid. */
  async exec(id: string, options: ExecOptions): Promise<number> {
    const args = ['exec', '--detach', '--pid-file', options.pidFile, '--process', options.processFile];
    if (options.consoleSocket) args.push('--console-socket', options.consoleSocket);
    await this.run({ operation: 'exec', id, args: [...args, id], io: options.stdio ?? ['ignore', 'ignore', 'ignore'] });
    return readPidFile(options.pidFile, 'exec', id);
  }

  async version(): Promise<RuntimeVersion> {
    return parseVersion(await this.run({ operation: 'version', args: ['--version'], bare: true }));
  }

  /** Runs the runtime once; resolves with its stdout, or rejects with a RuntimeError. */
  private async run(invocation: Invocation): Promise<string> {
    const logFile = invocation.bare ? undefined : await this.newLogFile();
    const globals = logFile ? ['--root', this.root, '--log', logFile, '--log-format', 'json'] : [];
    try {
      const result = await this.spawn([...globals, ...invocation.args], invocation.io);
      if (result.timedOut) {
        throw new RuntimeError(Code.DeadlineExceeded, `${this.describe(invocation)}: timed out after ${this.timeoutMs} ms`);
      }
      if (result.code === 0) return result.stdout;
      const logged = logFile ? errorsFromLog(await readFile(logFile, 'utf8').catch(() => '')) : [];
      const detail = logged.slice(-3).join('; ') || result.stderr.trim() || result.failure;
      throw new RuntimeError(codeForRuntimeMessage(detail), `${this.describe(invocation)}: ${detail}`);
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

  private spawn(
    args: string[],
    io: [StdioTarget, StdioTarget, StdioTarget] | undefined,
  ): Promise<{ code: number | null; stdout: string; stderr: string; failure: string; timedOut: boolean }> {
    // Pipes only for commands that leave nothing behind: a container holding one end of a pipe
    // would keep it open, and us waiting, for its whole life.
    const stdio: StdioOptions = io ?? ['ignore', 'pipe', 'pipe'];
    return new Promise((resolve, reject) => {
      const child = spawn(this.binary, args, { stdio, detached: true });
      const stdout: Buffer[] = [];
      const stderr: Buffer[] = [];
      child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
      child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        // The whole process group: a helper left holding our pipes would hold 'close' back too.
        // Containers are safe from this: their processes run in sessions of their own.
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          child.kill('SIGKILL');
        }
      }, this.timeoutMs);
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      // 'close' waits for the pipes to drain; without pipes it fires with 'exit'.
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({
          timedOut,
          code,
          stdout: Buffer.concat(stdout).toString('utf8'),
          stderr: Buffer.concat(stderr).toString('utf8'),
          failure: signal ? `killed by ${signal}` : `exit status ${code}`,
        });
      });
    });
  }
}

async function readPidFile(pidFile: string, operation: string, id: string): Promise<number> {
  const text = await readFile(pidFile, 'utf8').catch((err: Error) => {
    throw internal(`${operation} ${id}: reading pid file ${pidFile}: ${err.message}`, err);
  });
  const pid = Number.parseInt(text.trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0) throw internal(`${operation} ${id}: bad pid file ${pidFile}: ${JSON.stringify(text)}`);
  return pid;
}
