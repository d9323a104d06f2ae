// The pod's containers in the guest, run by runc: each one's bundle, init pid, exit and stdio
// (pipes, or a terminal whose master runc sends over a console socket).
// Operations on one container run one at a time (a Delete never races its Create); different
// containers go on in parallel. The container inits that `runc create` leaves are re-parented to
// the agent (PID 1 in the guest, a child subreaper elsewhere): the Reaper collects their real
// exit status. Each container's cgroup is the one its spec names (kuasard gives each its own,
// kinds/vmm/guest-spec.ts): its counters, its OOM kills, its limits (runc update) and its freezer
// (runc pause) are the container's.
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';

import { alreadyExists, Code, invalidArgument, notFound, RuntimeError } from '../../base/errors.js';
import { KeyedMutex } from '../../base/keyed-mutex.js';
import { exitedNow, UNKNOWN_EXIT_STATUS, type ExitInfo } from '../../base/model.js';
import type { CgroupV2Metrics } from '../../base/metrics.js';
import { oomKilledIn, readCgroupV2Metrics } from '../../linux/cgroup-stats.js';
import { hostCgroupLayout } from '../../linux/cgroups.js';
import type { Reaper } from '../../linux/reaper.js';
import type { OciRuntime } from '../../oci/runtime.js';
import type { ContainerState } from '../../oci/outputs.js';
import { cgroupsPathOf, type Spec } from '../../oci/spec.js';
import { ProcessStdioPipes, type GuestStdio, type OutputStream, type StdioWanted } from './process-stdio.js';
import { ProcessTerminal } from './process-terminal.js';

export interface CreateRequest {
  id: string;
  /** The OCI spec as the host sent it (JSON). */
  spec: Record<string, unknown>;
  stdio: StdioRequest;
  /** The pod's emptyDir directories the spec binds, made when missing. */
  emptyDirs: readonly string[];
}

/** The streams the host asked for, and whether they are a terminal's (the process's spec says the same). */
export type StdioRequest = StdioWanted & { terminal: boolean };

export interface ExecRequest {
  id: string;
  execId: string;
  /** The OCI Process as the host sent it (JSON). */
  process: Record<string, unknown>;
  stdio: StdioRequest;
}

/** A process of a container (its init or an exec) and what the agent holds of it. */
interface GuestProcess {
  readonly pid: number;
  readonly stdio: GuestStdio;
  /** Settles once the process has exited and was reaped. */
  readonly exit: Promise<ExitInfo>;
  /** Set as `exit` settles. */
  exited?: ExitInfo;
}

interface Container extends GuestProcess {
  readonly id: string;
  readonly bundle: string;
  readonly execs: Map<string, GuestProcess>;
  /** The container's cgroup (OCI linux.cgroupsPath), which runc removes at delete. */
  readonly cgroupsPath: string;
  /** Settles after `exit`: whether the OOM killer struck in the cgroup, read before a delete removes it. */
  readonly oomKilled: Promise<boolean>;
}

/** How a process ended, and for a container's init whether the OOM killer struck in its cgroup. */
export type ProcessEnd = ExitInfo & { oomKilled: boolean };

export class Containers {
  private readonly containers = new Map<string, Container>();
  private readonly mutex = new KeyedMutex();

  constructor(
    private readonly runtime: OciRuntime,
    private readonly reaper: Reaper,
    private readonly bundlesDir: string,
    /** Where runc's console sockets are made: private, with a short path. */
    private readonly consoleDir: string,
    private readonly log: Logger,
  ) {}

  create(request: CreateRequest): Promise<number> {
    return this.mutex.run(request.id, () => this.createNow(request));
  }

  private async createNow({ id, spec, stdio, emptyDirs }: CreateRequest): Promise<number> {
    if (this.containers.has(id)) throw alreadyExists(`container ${id}`);
    for (const dir of emptyDirs) {
      // Shared by the pod's containers: the first one makes it, writable by all (as kubelet's).
      if (await mkdir(dir, { recursive: true })) await chmod(dir, 0o777);
    }
    const bundle = path.join(this.bundlesDir, id);
    await mkdir(this.bundlesDir, { recursive: true, mode: 0o700 });
    try {
      await mkdir(bundle, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw alreadyExists(`bundle of container ${id}`);
      throw err;
    }
    let io: GuestStdio | undefined;
    try {
      await writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec), { mode: 0o600 });
      io = await this.openStdio(stdio);
      const pid = await this.runtime.create(id, bundle, { pidFile: path.join(bundle, 'init.pid'), ...io.runtimeIo });
      io.started();
      const cgroupsPath = cgroupsPathOf(spec as Spec, id);
      const init = this.follow(pid, io, `container ${id}`);
      const oomKilled = init.exit.then(() => oomKilledIn(cgroupsPath, this.log));
      const container: Container = { id, bundle, execs: new Map(), cgroupsPath, oomKilled, ...init };
      this.containers.set(id, container);
      this.log.info({ container: id, pid }, 'container created');
      return pid;
    } catch (err) {
      io?.release();
      await rm(bundle, { recursive: true, force: true });
      throw err;
    }
  }

  /** The process's stdio: a terminal when the host asked for one, else pipes. */
  private async openStdio(stdio: StdioRequest): Promise<GuestStdio> {
    if (!stdio.terminal) return new ProcessStdioPipes(stdio);
    await mkdir(this.consoleDir, { recursive: true, mode: 0o700 });
    return new ProcessTerminal(stdio, this.consoleDir);
  }

  /** A process that runc started, re-parented to the agent: its exit as the Reaper collects it. */
  private follow(pid: number, stdio: GuestStdio, what: string): GuestProcess {
    const exit = this.reaper.watch(pid).catch((err: Error) => {
      this.log.error({ pid, error: err.message }, `cannot collect the exit of ${what}`);
      return exitedNow(UNKNOWN_EXIT_STATUS);
    });
    const process: GuestProcess = { pid, stdio, exit };
    void exit.then((info) => {
      process.exited = info;
    });
    return process;
  }

  /** Starts another process in the running container `id` (runc exec --detach), with its own stdio. */
  exec({ id, execId, process: processSpec, stdio }: ExecRequest): Promise<number> {
    return this.mutex.run(id, async () => {
      const container = this.get(id);
      if (container.execs.has(execId)) throw alreadyExists(`exec ${execId} of container ${id}`);
      const processFile = path.join(container.bundle, `exec-${execId}.json`);
      const pidFile = path.join(container.bundle, `exec-${execId}.pid`);
      await writeFile(processFile, JSON.stringify(processSpec), { mode: 0o600 });
      let io: GuestStdio | undefined;
      try {
        io = await this.openStdio(stdio);
        const pid = await this.runtime.exec(id, { processFile, pidFile, ...io.runtimeIo });
        io.started();
        container.execs.set(execId, this.follow(pid, io, `exec ${execId} of container ${id}`));
        this.log.info({ container: id, exec: execId, pid }, 'exec started');
        return pid;
      } catch (err) {
        io?.release();
        throw err;
      } finally {
        await rm(processFile, { force: true });
        await rm(pidFile, { force: true });
      }
    });
  }

  /** Signals one exec; one that has ended is NotFound, as a process runc no longer knows. */
  killExec(id: string, execId: string, signal: number): void {
    checkSignal(signal);
    const exec = this.process(id, execId);
    if (exec.exited) throw notFound(`exec ${execId} of container ${id} (it has exited)`);
    process.kill(exec.pid, signal);
  }

  /** Forgets an exec: killed first if it still runs, its stdio released once it has been reaped. */
  async deleteExec(id: string, execId: string): Promise<void> {
    const exec = this.process(id, execId);
    if (execId === '') throw invalidArgument('DeleteProcess is for execs; a container is deleted with DeleteContainer');
    if (!exec.exited) process.kill(exec.pid, 'SIGKILL');
    await exec.exit;
    exec.stdio.release();
    this.get(id).execs.delete(execId);
  }

  start(id: string): Promise<number> {
    return this.mutex.run(id, async () => {
      const container = this.get(id);
      await this.runtime.start(id);
      this.log.info({ container: id }, 'container started');
      return container.pid;
    });
  }

  async kill(id: string, signal: number, all: boolean): Promise<void> {
    checkSignal(signal);
    this.get(id);
    await this.runtime.kill(id, signal, { all });
  }

  /** Resolves once the process has ended; rejects with the signal's reason when the call is given up. */
  async wait(id: string, execId: string, signal: AbortSignal): Promise<ProcessEnd> {
    const container = this.get(id);
    const exit = await abortable(this.process(id, execId).exit, signal);
    // Execs are not told OOM kills apart, as containerd's shims do not.
    return { ...exit, oomKilled: execId === '' && (await abortable(container.oomKilled, signal)) };
  }

  /** Removes the container (killing its processes if they still run), its bundle and its stdio. */
  delete(id: string): Promise<void> {
    return this.mutex.run(id, async () => {
      const container = this.get(id);
      try {
        await this.runtime.delete(id, { force: container.exited === undefined });
      } catch (err) {
        // Gone from runc already (a delete that failed halfway): what is left here goes all the same.
        if (!(err instanceof RuntimeError && err.code === Code.NotFound)) throw err;
      }
      // runc delete --force has killed the init and its execs: collect them before their stdio goes.
      await container.exit;
      for (const exec of container.execs.values()) {
        if (!exec.exited) process.kill(exec.pid, 'SIGKILL');
        await exec.exit;
        exec.stdio.release();
      }
      container.stdio.release();
      await rm(container.bundle, { recursive: true, force: true });
      this.containers.delete(id);
      this.log.info({ container: id }, 'container deleted');
    });
  }

  state(id: string): Promise<ContainerState> {
    this.get(id);
    return this.runtime.state(id);
  }

  pids(id: string): Promise<number[]> {
    this.get(id);
    return this.runtime.ps(id);
  }

  /** The counters of the container's cgroup, in v2's shape (the guest has cgroup v2 only). */
  async stats(id: string): Promise<CgroupV2Metrics> {
    return readCgroupV2Metrics(this.get(id).cgroupsPath, await hostCgroupLayout());
  }

  /** New limits for the container's cgroup: `resources` is an OCI LinuxResources object. */
  update(id: string, resources: Record<string, unknown>): Promise<void> {
    return this.mutex.run(id, () => this.runtime.updateResources(id, resources, this.get(id).bundle));
  }

  /** Freezes (or thaws) every process of the container: its cgroup's freezer, through runc. */
  pause(id: string): Promise<void> {
    return this.mutex.run(id, async () => {
      this.get(id);
      await this.runtime.pause(id);
    });
  }

  resume(id: string): Promise<void> {
    return this.mutex.run(id, async () => {
      this.get(id);
      await this.runtime.resume(id);
    });
  }

  /** The stdio of a container's init (exec_id empty) or of one of its execs. */
  stdio(id: string, execId: string): GuestStdio {
    return this.process(id, execId).stdio;
  }

  output(id: string, execId: string, stream: OutputStream) {
    const buffer = this.stdio(id, execId).output(stream);
    if (!buffer) throw new RuntimeError(Code.FailedPrecondition, `container ${id}: created without ${stream}`);
    return buffer;
  }

  private get(id: string): Container {
    const container = this.containers.get(id);
    if (!container) throw notFound(`container ${id}`);
    return container;
  }

  private process(id: string, execId: string): GuestProcess {
    const container = this.get(id);
    if (execId === '') return container;
    const exec = container.execs.get(execId);
    if (!exec) throw notFound(`exec ${execId} of container ${id}`);
    return exec;
  }
}

function checkSignal(signal: number): void {
  if (!Number.isInteger(signal) || signal < 1 || signal > 64) throw invalidArgument(`signal ${signal} is not a signal number (1-64)`);
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
