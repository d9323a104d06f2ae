// The pod's containers in the guest, run by runc: each one's bundle, init pid, exit and stdio.
// Operations on one container run one at a time (a Delete never races its Create); different
// containers go on in parallel. The container inits that `runc create` leaves are re-parented to
// the agent (PID 1 in the guest, a child subreaper elsewhere): the Reaper collects their real
// exit status.
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';

import { alreadyExists, Code, invalidArgument, notFound, RuntimeError, unimplemented } from '../../base/errors.js';
import { KeyedMutex } from '../../base/keyed-mutex.js';
import { exitedNow, UNKNOWN_EXIT_STATUS, type ExitInfo } from '../../base/model.js';
import type { Reaper } from '../../linux/reaper.js';
import type { OciRuntime } from '../../oci/runtime.js';
import type { ContainerState } from '../../oci/outputs.js';
import { ProcessStdioPipes, type OutputStream, type StdioWanted } from './process-stdio.js';

export interface CreateRequest {
  id: string;
  /** The OCI spec as the host sent it (JSON). */
  spec: Record<string, unknown>;
  stdio: StdioWanted & { terminal: boolean };
  /** The pod's emptyDir directories the spec binds, made when missing. */
  emptyDirs: readonly string[];
}

interface Container {
  readonly id: string;
  readonly bundle: string;
  readonly pid: number;
  readonly stdio: ProcessStdioPipes;
  /** Settles once the init has exited and was reaped. */
  readonly exit: Promise<ExitInfo>;
  /** Set as `exit` settles. */
  exited?: ExitInfo;
}

export class Containers {
  private readonly containers = new Map<string, Container>();
  private readonly mutex = new KeyedMutex();

  constructor(
    private readonly runtime: OciRuntime,
    private readonly reaper: Reaper,
    private readonly bundlesDir: string,
    private readonly log: Logger,
  ) {}

  create(request: CreateRequest): Promise<number> {
    return this.mutex.run(request.id, () => this.createNow(request));
  }

  private async createNow({ id, spec, stdio, emptyDirs }: CreateRequest): Promise<number> {
    if (this.containers.has(id)) throw alreadyExists(`container ${id}`);
    if (stdio.terminal) throw unimplemented(`container ${id}: terminals are not supported by this agent yet`);
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
    let pipes: ProcessStdioPipes | undefined;
    try {
      await writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec), { mode: 0o600 });
      pipes = new ProcessStdioPipes(stdio);
      const pid = await this.runtime.create(id, bundle, { pidFile: path.join(bundle, 'init.pid'), stdio: pipes.childStdio });
      pipes.closeChildEnds();
      const exit = this.reaper.watch(pid).catch((err: Error) => {
        this.log.error({ container: id, pid, error: err.message }, 'cannot collect the exit of a container init');
        return exitedNow(UNKNOWN_EXIT_STATUS);
      });
      const container: Container = { id, bundle, pid, stdio: pipes, exit };
      void exit.then((info) => {
        container.exited = info;
      });
      this.containers.set(id, container);
      this.log.info({ container: id, pid }, 'container created');
      return pid;
    } catch (err) {
      pipes?.release();
      await rm(bundle, { recursive: true, force: true });
      throw err;
    }
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
    if (!Number.isInteger(signal) || signal < 1 || signal > 64) throw invalidArgument(`signal ${signal} is not a signal number (1-64)`);
    this.get(id);
    await this.runtime.kill(id, signal, { all });
  }

  /** Resolves once the init has ended; rejects with the signal's reason when the call is given up. */
  async wait(id: string, execId: string, signal: AbortSignal): Promise<ExitInfo> {
    const container = this.process(id, execId);
    return abortable(container.exit, signal);
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
      // runc delete --force has killed the init: collect it before its stdio goes.
      await container.exit;
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

  /** The stdio of a container's init (exec_id empty) or of one of its execs. */
  stdio(id: string, execId: string): ProcessStdioPipes {
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

  private process(id: string, execId: string): Container {
    const container = this.get(id);
    // Execs come with ExecProcess, which this agent does not serve yet: none exists.
    if (execId !== '') throw notFound(`exec ${execId} of container ${id}`);
    return container;
  }
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
