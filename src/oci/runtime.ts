// The commands of an OCI runtime CLI: runc (or crun, which takes the same commands and flags)
// and gVisor's runsc, which copies runc's. What differs between them is in their profile
// (profiles.ts); one invocation is cli.ts's job.
//
// `create` and `exec --detach` leave a process running after the runtime exits; that process
// inherits the stdio we give the runtime. With runc it is the container's process, re-parented to
// us when we are a child subreaper (see linux/reaper.ts), so its exit status reaches us. With
// runsc the container's processes live inside the gVisor sandbox: `create` reports the sandbox's
// pid, and `wait` tells the exit (see exit-source.ts).
//
// Every command takes an optional logger and then logs its duration as stage `oci.<command>`,
// the records the benchmark's stage report reads.

import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';

import { internal, unimplemented } from '../base/errors.js';
import type { ExitInfo } from '../base/model.js';
import { OciCli, type ProcessStdio } from './cli.js';
import { parsePids, parseState, parseVersion, parseWaitResult, type ContainerState, type RuntimeVersion } from './outputs.js';
import { runcProfile, type RuntimeProfile } from './profiles.js';
import type { Spec } from './spec.js';
import { parseStatsEvent, type ContainerStats } from './stats.js';

export type { ProcessStdio, StdioTarget } from './cli.js';

export interface OciRuntimeOptions {
  /** Which runtime this is: its messages and commands. Default runcProfile. */
  profile?: RuntimeProfile;
  /** The runtime binary, by name (looked up in PATH) or path. Default: the profile's name. */
  binary?: string;
  /** The runtime's state directory (its --root). */
  root: string;
  /** More global arguments, given after --root to every command (runsc: --platform, --network...). */
  globalArgs?: string[];
  /** Where each invocation's log goes while it runs. Default: "<root>-log". */
  logDir?: string;
  /** How long a command may take before it is killed (wait excepted). Default 60 s. */
  timeoutMs?: number;
}

export interface CallOptions {
  /** Logs the command's duration as stage `oci.<command>` (debug level). */
  log?: Logger;
}

export interface ProcessIo {
  /** stdin, stdout, stderr of the container's process. Default: all 'ignore'. */
  stdio?: ProcessStdio;
  /** A unix socket to receive the pty master on, when the process has a terminal. */
  consoleSocket?: string;
}

export interface CreateOptions extends ProcessIo, CallOptions {
  /** Where the runtime writes the pid of the container's init (runsc: of its sandbox). */
  pidFile: string;
}

export interface ExecOptions extends ProcessIo, CallOptions {
  /** Where the runtime writes the pid of the new process (runsc: of the `runsc exec` waiting for it). */
  pidFile: string;
  /** The process to run, as an OCI Process JSON file. */
  processFile: string;
}

export interface WaitOptions {
  /** Stops waiting: the `wait` command is killed and the call rejects with Cancelled. */
  signal?: AbortSignal;
}

const NO_STDIO: ProcessStdio = ['ignore', 'ignore', 'ignore'];

export class OciRuntime {
  readonly binary: string;
  readonly root: string;
  readonly logDir: string;
  readonly profile: RuntimeProfile;
  private readonly cli: OciCli;

  constructor(options: OciRuntimeOptions) {
    this.profile = options.profile ?? runcProfile;
    this.binary = options.binary ?? this.profile.name;
    this.root = path.resolve(options.root);
    this.logDir = path.resolve(options.logDir ?? `${this.root}-log`);
    this.cli = new OciCli({
      binary: this.binary,
      profile: this.profile,
      globalArgs: ['--root', this.root, ...(options.globalArgs ?? [])],
      logDir: this.logDir,
      timeoutMs: options.timeoutMs ?? 60_000,
    });
  }

  /** The spec as this runtime takes it: its version the one the runtime knows, where its profile names one (crun 1.8). */
  specForRuntime(spec: Spec): Spec {
    return this.profile.specVersion === undefined ? spec : { ...spec, ociVersion: this.profile.specVersion };
  }

  /** Creates the container (its init waits for `start`) and returns the pid the runtime wrote. */
  async create(id: string, bundle: string, options: CreateOptions): Promise<number> {
    const args = ['create', '--bundle', bundle, '--pid-file', options.pidFile];
    if (options.consoleSocket) args.push('--console-socket', options.consoleSocket);
    await this.cli.invoke({ operation: 'create', id, args: [...args, id], io: options.stdio ?? NO_STDIO, log: options.log });
    return readPidFile(options.pidFile, 'create', id);
  }

  /**
   * Starts a created container. `stdio`: for a runtime that hands the process its stdio at start
   * (runsc's containers of a sandbox). `launcher`: a command that runs the runtime (it ends by
   * exec'ing its arguments).
   */
  async start(id: string, options: CallOptions & { stdio?: ProcessStdio; launcher?: readonly string[] } = {}): Promise<void> {
    await this.cli.invoke({ operation: 'start', id, args: ['start', id], io: options.stdio, log: options.log, launcher: options.launcher });
  }

  /** Sends `signal` to the init, or with `all` to every process of the container. */
  async kill(id: string, signal: number | NodeJS.Signals, options: CallOptions & { all?: boolean } = {}): Promise<void> {
    const args = ['kill', ...(options.all ? ['--all'] : []), id, String(signal)];
    await this.cli.invoke({ operation: 'kill', id, args, log: options.log });
  }

  /** Deletes a stopped container (with `force`, kills it first): its state, cgroups and mounts. */
  async delete(id: string, options: CallOptions & { force?: boolean } = {}): Promise<void> {
    await this.cli.invoke({ operation: 'delete', id, args: ['delete', ...(options.force ? ['--force'] : []), id], log: options.log });
  }

  /** The pids of the container's processes as the runtime sees them: host pids (runc), sandbox pids (runsc). */
  async ps(id: string, options: CallOptions = {}): Promise<number[]> {
    return parsePids(await this.cli.invoke({ operation: 'ps', id, args: ['ps', '--format', 'json', id], log: options.log }));
  }

  /** The container's OCI state: status, pid, bundle. */
  async state(id: string, options: CallOptions = {}): Promise<ContainerState> {
    return parseState(await this.cli.invoke({ operation: 'state', id, args: ['state', id], log: options.log }));
  }

  /** One sample of the container's figures (`events --stats`). */
  async stats(id: string, options: CallOptions = {}): Promise<ContainerStats> {
    const output = await this.cli.invoke({ operation: 'events', id, args: ['events', '--stats', id], log: options.log });
    return parseStatsEvent(output, id);
  }

  /**
   * Resolves when the container's init has exited, with its status (`wait <id>`, runsc only).
   * Lasts as long as the container does: no time-out applies, and no stage is logged.
   */
  async wait(id: string, options: WaitOptions = {}): Promise<ExitInfo> {
    if (!this.profile.hasWait) throw unimplemented(`${this.profile.name} wait ${id}: ${this.profile.name} has no wait command`);
    const output = await this.cli.invoke({ operation: 'wait', id, args: ['wait', id], untimed: true, signal: options.signal });
    return parseWaitResult(output, id);
  }

  /** Applies new limits to a container's cgroup; `resourcesFile` holds OCI LinuxResources JSON. */
  async update(id: string, resourcesFile: string, options: CallOptions = {}): Promise<void> {
    await this.cli.invoke({ operation: 'update', id, args: ['update', '--resources', resourcesFile, id], log: options.log });
  }

  /**
   * `update` with the LinuxResources object `resources`, passed in a file of `scratchDir` (the
   * container's own directory) that is removed afterwards.
   */
  async updateResources(id: string, resources: Record<string, unknown>, scratchDir: string, options: CallOptions = {}): Promise<void> {
    const file = path.join(scratchDir, 'resources-update.json');
    await writeFile(file, JSON.stringify(resources), { mode: 0o600 });
    try {
      await this.update(id, file, options);
    } finally {
      await rm(file, { force: true });
    }
  }

  /** Freezes every process of the container. */
  async pause(id: string, options: CallOptions = {}): Promise<void> {
    await this.cli.invoke({ operation: 'pause', id, args: ['pause', id], log: options.log });
  }

  async resume(id: string, options: CallOptions = {}): Promise<void> {
    await this.cli.invoke({ operation: 'resume', id, args: ['resume', id], log: options.log });
  }

  /** Starts another process in a running container, detached; returns the pid the runtime wrote. */
  async exec(id: string, options: ExecOptions): Promise<number> {
    const args = ['exec', '--detach', '--pid-file', options.pidFile, '--process', options.processFile];
    if (options.consoleSocket) args.push('--console-socket', options.consoleSocket);
    await this.cli.invoke({ operation: 'exec', id, args: [...args, id], io: options.stdio ?? NO_STDIO, log: options.log });
    return readPidFile(options.pidFile, 'exec', id);
  }

  async version(): Promise<RuntimeVersion> {
    return parseVersion(await this.cli.invoke({ operation: 'version', args: ['--version'], bare: true }));
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
