// One sandbox at run time: its record, its containers' processes, and the waiters on them.
// Every change to the record is saved before the call that made it returns.
import { join } from 'node:path';
import type { Logger } from 'pino';
import { alreadyExists, failedPrecondition, notFound } from './errors.js';
import type { EventSink } from './events.js';
import { validateId } from './ids.js';
import type { SandboxContext, SandboxKind } from './kind.js';
import { KeyedMutex } from './keyed-mutex.js';
import type { ContainerRecord, ExitInfo, MountSpec, SandboxRecord, Stdio } from './model.js';
import { nowIso } from './model.js';
import { writeJsonAtomic } from './state-file.js';

export const STATE_FILE = 'state.json';
export const TASK_SOCKET_NAME = 'task.sock';
/** sun_path holds 108 bytes with the terminating NUL. */
export const MAX_SOCKET_PATH = 107;

export interface TaskCreateInput {
  id: string;
  bundle: string;
  rootfs: MountSpec[];
  stdio: Stdio;
}

export interface TaskStateView {
  id: string;
  bundle: string;
  pid: number;
  status: ContainerRecord['status'];
  stdio: Stdio;
  exit: ExitInfo | null;
}

/** A one-shot signal with many listeners: resolves every waiter with the same exit. */
class ExitLatch {
  private resolveExit!: (exit: ExitInfo) => void;
  readonly promise: Promise<ExitInfo> = new Promise((resolve) => (this.resolveExit = resolve));
  settle(exit: ExitInfo): void {
    this.resolveExit(exit);
  }
}

export class Sandbox implements SandboxContext {
  readonly log: Logger;
  private readonly containerLocks = new KeyedMutex();
  private readonly exits = new Map<string, ExitLatch>();
  readonly stopped = new ExitLatch();

  constructor(
    readonly record: SandboxRecord,
    readonly dir: string,
    private readonly kind: SandboxKind,
    private readonly events: EventSink,
    log: Logger,
  ) {
    this.log = log.child({ sandbox: record.id });
    for (const container of record.containers) {
      const latch = new ExitLatch();
      if (container.exit) latch.settle(container.exit);
      this.exits.set(container.id, latch);
    }
    if (record.exit) this.stopped.settle(record.exit);
  }

  get id(): string {
    return this.record.id;
  }

  /**
   * After a daemon restart: follow again every container that had not exited, so that exits
   * that happened while the daemon was down are reported now.
   */
  adoptContainers(): void {
    for (const container of this.record.containers) {
      if (container.status !== 'stopped') this.trackExit(container, this.kind.tasks.reattach(this, container));
    }
  }

  /** Where the sandbox's Task API listens; checked to fit a unix socket address at create. */
  get taskSocketPath(): string {
    return join(this.dir, TASK_SOCKET_NAME);
  }

  private lastSave: Promise<void> = Promise.resolve();

  /** Writes the record; writes are queued so that the file always ends with the latest one. */
  save(): Promise<void> {
    const write = this.lastSave.then(() => writeJsonAtomic(join(this.dir, STATE_FILE), this.record));
    this.lastSave = write.catch(() => undefined);
    return write;
  }

  container(id: string): ContainerRecord {
    const container = this.record.containers.find((c) => c.id === id);
    if (!container) throw notFound(`container ${id} in sandbox ${this.id}`);
    return container;
  }

  async createTask(input: TaskCreateInput): Promise<number> {
    validateId('container', input.id);
    return this.containerLocks.run(input.id, async () => {
      if (this.record.phase !== 'ready') {
        throw failedPrecondition(`create container ${input.id}: sandbox ${this.id} is ${this.record.phase}, not ready`);
      }
      if (this.record.containers.some((c) => c.id === input.id)) {
        throw alreadyExists(`container ${input.id}`);
      }
      const container: ContainerRecord = {
        id: input.id,
        bundle: input.bundle,
        rootfs: input.rootfs,
        stdio: input.stdio,
        pid: 0,
        status: 'created',
        exit: null,
        kindState: null,
      };
      const log = this.log.child({ container: input.id });
      let created;
      try {
        created = await this.kind.tasks.create(this, container);
      } catch (err) {
        log.warn({ err }, 'task create failed; releasing what it took');
        await this.kind.tasks.delete(this, container).catch((e) => log.error({ err: e }, 'cleanup after failed create'));
        throw err;
      }
      container.pid = created.pid;
      this.record.containers.push(container);
      this.trackExit(container, created.exited);
      await this.save();
      log.info({ pid: created.pid }, 'task created');
      this.events.publish(this.record.namespace, {
        topic: '/tasks/create',
        containerId: container.id,
        bundle: container.bundle,
        pid: container.pid,
        stdio: container.stdio,
      });
      return container.pid;
    });
  }

  /** Record the exit when the process ends, whatever happens to the caller that created it. */
  private trackExit(container: ContainerRecord, exited: Promise<ExitInfo>): void {
    let latch = this.exits.get(container.id);
    if (!latch) {
      latch = new ExitLatch();
      this.exits.set(container.id, latch);
    }
    const settle = latch;
    void exited.then(
      (exit) => this.recordExit(container, exit, settle),
      (err) => {
        this.log.error({ err, container: container.id }, 'lost track of the task process; reporting it exited (255)');
        return this.recordExit(container, { exitStatus: 255, exitedAt: nowIso() }, settle);
      },
    );
  }

  private async recordExit(container: ContainerRecord, exit: ExitInfo, latch: ExitLatch): Promise<void> {
    container.status = 'stopped';
    container.exit = exit;
    latch.settle(exit);
    this.log.info({ container: container.id, pid: container.pid, exitStatus: exit.exitStatus }, 'task exited');
    this.events.publish(this.record.namespace, {
      topic: '/tasks/exit',
      containerId: container.id,
      execId: container.id,
      pid: container.pid,
      exitStatus: exit.exitStatus,
      exitedAt: exit.exitedAt,
    });
    // The container may have been deleted meanwhile; saving the record is still right.
    await this.save().catch((err) => this.log.error({ err }, 'saving state after exit'));
  }

  async startTask(id: string): Promise<number> {
    return this.containerLocks.run(id, async () => {
      const container = this.container(id);
      if (container.status !== 'created') {
        throw failedPrecondition(`start container ${id}: it is ${container.status}, not created`);
      }
      await this.kind.tasks.start(this, container);
      // The process may have run to completion already; never move a stopped task back.
      if (container.status === 'created') container.status = 'running';
      await this.save();
      this.events.publish(this.record.namespace, { topic: '/tasks/start', containerId: id, pid: container.pid });
      return container.pid;
    });
  }

  taskState(id: string): TaskStateView {
    const c = this.container(id);
    return { id: c.id, bundle: c.bundle, pid: c.pid, status: c.status, stdio: c.stdio, exit: c.exit };
  }

  async killTask(id: string, signal: number, all: boolean): Promise<void> {
    const container = this.container(id);
    if (container.status === 'stopped') {
      // Like runc's shim: killing an exited process is not an error for `all`, but is for the init.
      if (all) return;
      throw notFound(`kill container ${id}: process already finished`);
    }
    await this.kind.tasks.kill(this, container, signal, all);
  }

  async waitTask(id: string): Promise<ExitInfo> {
    this.container(id);
    const latch = this.exits.get(id);
    if (!latch) throw notFound(`container ${id}`);
    return latch.promise;
  }

  async deleteTask(id: string): Promise<{ pid: number; exit: ExitInfo }> {
    return this.containerLocks.run(id, async () => {
      const container = this.container(id);
      if (container.status === 'running') {
        throw failedPrecondition(`delete container ${id}: it is still running`);
      }
      await this.kind.tasks.delete(this, container);
      const exit = container.exit ?? { exitStatus: 0, exitedAt: nowIso() };
      this.record.containers = this.record.containers.filter((c) => c !== container);
      this.exits.delete(id);
      await this.save();
      this.log.info({ container: id }, 'task deleted');
      this.events.publish(this.record.namespace, {
        topic: '/tasks/delete',
        containerId: id,
        execId: '',
        pid: container.pid,
        exitStatus: exit.exitStatus,
        exitedAt: exit.exitedAt,
      });
      return { pid: container.pid, exit };
    });
  }

  async taskPids(id: string): Promise<number[]> {
    const container = this.container(id);
    if (container.status === 'stopped') return [];
    return this.kind.tasks.pids(this, container);
  }

  /**
   * Ends every container: SIGTERM (when there is time for it), then SIGKILL for whatever is
   * left when the grace period runs out.
   */
  async stopAllTasks(graceMs: number): Promise<void> {
    const running = () => this.record.containers.filter((c) => c.status !== 'stopped');
    const allExited = () => Promise.all(running().map((c) => this.exits.get(c.id)?.promise));
    if (graceMs > 0 && running().length > 0) {
      await Promise.all(running().map((c) => this.kind.tasks.kill(this, c, 15, true).catch(() => undefined)));
      await Promise.race([allExited(), delay(graceMs)]);
    }
    if (running().length > 0) {
      await Promise.all(running().map((c) => this.kind.tasks.kill(this, c, 9, true).catch(() => undefined)));
      await allExited();
    }
  }

  /** Release every container's resources (after they have stopped). */
  async deleteAllTasks(): Promise<void> {
    for (const container of [...this.record.containers]) {
      await this.kind.tasks.delete(this, container);
    }
    this.record.containers = [];
    this.exits.clear();
  }
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
