// One sandbox at run time: its record, its containers' processes, and the waiters on them.
// Every change to the record is saved before the call that made it returns.
import { join } from 'node:path';
import type { Logger } from 'pino';
import { alreadyExists, failedPrecondition, notFound } from '../base/errors.js';
import type { EventSink } from '../base/events.js';
import { validateId } from '../base/ids.js';
import type { CreatedProcess, SandboxContext, SandboxKind } from '../kind-api/kind.js';
import type { WindowSize } from '../base/model.js';
import { KeyedMutex } from '../base/keyed-mutex.js';
import type { CgroupMetrics } from '../base/metrics.js';
import {
  exitedNow,
  UNKNOWN_EXIT_STATUS,
  type ContainerRecord,
  type ExecRecord,
  type ExitInfo,
  type Mount,
  type SandboxRecord,
  type Stdio,
} from '../base/model.js';
import { writeJsonAtomic } from '../base/state-file.js';
import { StreamRegistry } from '../base/streams.js';

export const STATE_FILE = 'state.json';
export const TASK_SOCKET_NAME = 'task.sock';
/** sun_path holds 108 bytes with the terminating NUL. */
export const MAX_SOCKET_PATH = 107;

export interface TaskCreateInput {
  id: string;
  bundle: string;
  rootfs: Mount[];
  stdio: Stdio;
}

export interface ExecCreateInput {
  execId: string;
  /** The OCI runtime-spec Process (decoded JSON). */
  spec: Record<string, unknown>;
  stdio: Stdio;
}

/** How long an init's exit waits for its killed execs to be reaped. */
const EXECS_END_MS = 5_000;

/** The key of an exec in the per-process maps; ids cannot contain '/'. */
const execKey = (containerId: string, execId: string): string => `${containerId}/${execId}`;

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
  /** Exit latches of exec processes, by execKey. */
  private readonly execExits = new Map<string, ExitLatch>();
  readonly stopped = new ExitLatch();
  readonly streams = new StreamRegistry();
  /** Why the sandbox cannot be served after a restart (reported with its status); empty while it can. */
  problem = '';
  /**
   * Whether save() writes the record: not for a stand-in of a state file that could not be loaded
   * (that file stays for inspection), nor once the sandbox's directory is being removed.
   */
  private saving: boolean;

  constructor(
    readonly record: SandboxRecord,
    readonly dir: string,
    private readonly kind: SandboxKind,
    private readonly events: EventSink,
    log: Logger,
    options: { standIn?: boolean } = {},
  ) {
    this.saving = !options.standIn;
    this.log = log.child({ sandbox: record.id });
    for (const container of record.containers) {
      const latch = new ExitLatch();
      if (container.exit) latch.settle(container.exit);
      this.exits.set(container.id, latch);
      for (const exec of container.execs) {
        const execLatch = new ExitLatch();
        if (exec.exit) execLatch.settle(exec.exit);
        this.execExits.set(execKey(container.id, exec.id), execLatch);
      }
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
      // An exec's stdio lived in the daemon that died, so it cannot be served again: report it
      // ended, so that its waiters (and the wait for its container's init) do not hang.
      for (const exec of container.execs) {
        if (exec.status === 'stopped') continue;
        exec.status = 'stopped';
        exec.exit = exitedNow(UNKNOWN_EXIT_STATUS);
        this.execExits.get(execKey(container.id, exec.id))?.settle(exec.exit);
        this.log.warn({ container: container.id, exec: exec.id }, 'exec from before the restart is reported exited (255)');
      }
    }
  }

  /** Where the sandbox's Task API listens; checked to fit a unix socket address at create. */
  get taskSocketPath(): string {
    return join(this.dir, TASK_SOCKET_NAME);
  }

  private lastSave: Promise<void> = Promise.resolve();

  /**
   * Saves no more and waits for a save under way: the directory is about to be removed. An exit
   * recorded while Shutdown runs saves after its waiters are told, and its temporary file once
   * made the directory's removal fail (ENOTEMPTY).
   */
  async stopSaving(): Promise<void> {
    this.saving = false;
    await this.lastSave;
  }

  /** Writes the record; writes are queued so that the file always ends with the latest one. */
  save(): Promise<void> {
    if (!this.saving) return Promise.resolve();
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
        execs: [],
      };
      const log = this.log.child({ container: input.id });
      let created: CreatedProcess;
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

  /**
   * Record the exit when the process ends, whatever happens to the caller that created it.
   *
   * The exit waits for the call in progress on the container (it takes the container's lock)
   * and for that call's answer to go out. containerd answers an exit by deleting the task and
   * closing the task's connection; a call still running on it then fails with "ttrpc: closed".
   * That happened to a Kill: the process died of its SIGKILL while `runc kill` was still
   * finishing, its Wait was answered, and CRI's Delete closed the connection under the Kill.
   * Likewise, a process that ends while its Start is being answered is reported after that
   * Start and its TaskStart event, as runc's shim does.
   */
  private trackExit(container: ContainerRecord, exited: Promise<ExitInfo>): void {
    let latch = this.exits.get(container.id);
    if (!latch) {
      latch = new ExitLatch();
      this.exits.set(container.id, latch);
    }
    const settle = latch;
    const record = (exit: ExitInfo) =>
      this.containerLocks.run(container.id, async () => {
        await answersSent();
        await this.recordExit(container, exit, settle);
      });
    void exited.then(record, (err) => {
      this.log.error({ err, container: container.id }, 'lost track of the task process; reporting it exited (255)');
      return record(exitedNow(UNKNOWN_EXIT_STATUS));
    });
  }

  private async recordExit(container: ContainerRecord, exit: ExitInfo, latch: ExitLatch): Promise<void> {
    // As runc's shim: the init's exit is reported after its execs', which containerd expects.
    await this.endExecs(container);
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

  async startTask(id: string, execId = ''): Promise<number> {
    if (execId) return this.startExec(id, execId);
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

  taskState(id: string, execId = ''): TaskStateView {
    const c = this.container(id);
    if (execId) {
      const e = this.exec(c, execId);
      return { id: c.id, bundle: c.bundle, pid: e.pid, status: e.status, stdio: e.stdio, exit: e.exit };
    }
    return { id: c.id, bundle: c.bundle, pid: c.pid, status: c.status, stdio: c.stdio, exit: c.exit };
  }

  /** Under the process's lock, so that its exit is reported only once the Kill is answered (see trackExit). */
  async killTask(id: string, signal: number, all: boolean, execId = ''): Promise<void> {
    if (execId) return this.containerLocks.run(execKey(id, execId), () => this.killExec(this.container(id), execId, signal, all));
    return this.containerLocks.run(id, async () => {
      const container = this.container(id);
      if (container.status === 'stopped') {
        // Like runc's shim: killing an exited process is not an error for `all`, but is for the init.
        if (all) return;
        throw notFound(`kill container ${id}: process already finished`);
      }
      await this.kind.tasks.kill(this, container, signal, all);
    });
  }

  async waitTask(id: string, execId = ''): Promise<ExitInfo> {
    const container = this.container(id);
    if (execId) this.exec(container, execId);
    const latch = execId ? this.execExits.get(execKey(id, execId)) : this.exits.get(id);
    if (!latch) throw notFound(execId ? `exec ${execId} in container ${id}` : `container ${id}`);
    return latch.promise;
  }

  async deleteTask(id: string, execId = ''): Promise<{ pid: number; exit: ExitInfo }> {
    if (execId) return this.deleteExec(id, execId);
    return this.containerLocks.run(id, async () => {
      const container = this.container(id);
      if (container.status === 'running' || container.status === 'paused') {
        throw failedPrecondition(`delete container ${id}: it is still ${container.status}`);
      }
      await this.releaseExecs(container);
      await this.kind.tasks.delete(this, container);
      const exit = container.exit ?? exitedNow(0);
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
      await this.releaseExecs(container);
      await this.kind.tasks.delete(this, container);
    }
    this.record.containers = [];
    this.exits.clear();
  }

  // ---- resources and state -------------------------------------------------------------------

  /** Task Stats. A stopped container still answers while its cgroup exists (until Delete). */
  async taskStats(id: string): Promise<CgroupMetrics> {
    return this.kind.tasks.stats(this, this.container(id));
  }

  /** Task Update: new limits (OCI LinuxResources) for a container that has not stopped. */
  async updateTask(id: string, resources: Record<string, unknown>): Promise<void> {
    await this.containerLocks.run(id, async () => {
      const container = this.container(id);
      if (container.status === 'stopped') throw failedPrecondition(`update container ${id}: it has stopped`);
      await this.kind.tasks.update(this, container, resources);
      this.log.info({ container: id }, 'task resources updated');
    });
  }

  pauseTask(id: string): Promise<void> {
    return this.switchRunState(id, 'pause', 'running', 'paused', '/tasks/paused');
  }

  resumeTask(id: string): Promise<void> {
    return this.switchRunState(id, 'resume', 'paused', 'running', '/tasks/resumed');
  }

  /** Pause or resume: from one state to the other through the kind, then saved and published. */
  private async switchRunState(
    id: string,
    op: 'pause' | 'resume',
    from: 'running' | 'paused',
    to: 'running' | 'paused',
    topic: '/tasks/paused' | '/tasks/resumed',
  ): Promise<void> {
    await this.containerLocks.run(id, async () => {
      const container = this.container(id);
      if (container.status !== from) throw failedPrecondition(`${op} container ${id}: it is ${container.status}, not ${from}`);
      await this.kind.tasks[op](this, container);
      // It may have exited meanwhile: never move a stopped task back.
      if (container.status === from) container.status = to;
      await this.save();
      this.log.info({ container: id }, `task ${to}`);
      this.events.publish(this.record.namespace, { topic, containerId: id });
    });
  }

  reportOom(containerId: string): void {
    this.log.warn({ container: containerId }, 'the OOM killer struck in the container');
    this.events.publish(this.record.namespace, { topic: '/tasks/oom', containerId });
  }

  // ---- exec processes ------------------------------------------------------------------------

  private exec(container: ContainerRecord, execId: string): ExecRecord {
    const exec = container.execs.find((e) => e.id === execId);
    if (!exec) throw notFound(`exec ${execId} in container ${container.id}`);
    return exec;
  }

  /** Task Exec: records the process; it runs at Start. */
  async execProcess(id: string, input: ExecCreateInput): Promise<void> {
    validateId('exec', input.execId);
    await this.containerLocks.run(id, async () => {
      const container = this.container(id);
      if (container.status === 'stopped') {
        throw failedPrecondition(`exec ${input.execId} in container ${id}: the container has stopped`);
      }
      if (container.execs.some((e) => e.id === input.execId)) throw alreadyExists(`exec ${input.execId} in container ${id}`);
      const exec: ExecRecord = { id: input.execId, spec: input.spec, stdio: input.stdio, pid: 0, status: 'created', exit: null };
      container.execs.push(exec);
      this.execExits.set(execKey(id, exec.id), new ExitLatch());
      await this.save();
      this.events.publish(this.record.namespace, { topic: '/tasks/exec-added', containerId: id, execId: exec.id });
    });
  }

  private async startExec(id: string, execId: string): Promise<number> {
    return this.containerLocks.run(execKey(id, execId), async () => {
      const container = this.container(id);
      const exec = this.exec(container, execId);
      if (exec.status !== 'created') throw failedPrecondition(`start exec ${execId} in container ${id}: it is ${exec.status}, not created`);
      const latch = this.execExits.get(execKey(id, execId))!;
      let started: CreatedProcess;
      try {
        started = await this.kind.tasks.startExec(this, container, exec);
      } catch (err) {
        // As runc's shim: an exec that could not start has ended, so its waiters (containerd
        // waits before it starts) are released instead of hanging.
        exec.status = 'stopped';
        exec.exit = exitedNow(UNKNOWN_EXIT_STATUS);
        latch.settle(exec.exit);
        await this.save();
        throw err;
      }
      exec.pid = started.pid;
      exec.status = 'running';
      this.trackExecExit(container, exec, started.exited, latch);
      await this.save();
      this.log.info({ container: id, exec: execId, pid: exec.pid }, 'exec started');
      this.events.publish(this.record.namespace, { topic: '/tasks/exec-started', containerId: id, execId, pid: exec.pid });
      return exec.pid;
    });
  }

  /** As trackExit, for an exec: after the call in progress on it (its Start, a Kill) has been answered. */
  private trackExecExit(container: ContainerRecord, exec: ExecRecord, exited: Promise<ExitInfo>, latch: ExitLatch): void {
    const record = (exit: ExitInfo) =>
      this.containerLocks.run(execKey(container.id, exec.id), async () => {
        await answersSent();
        await recordNow(exit);
      });
    const recordNow = async (exit: ExitInfo) => {
      exec.status = 'stopped';
      exec.exit = exit;
      latch.settle(exit);
      this.log.info({ container: container.id, exec: exec.id, pid: exec.pid, exitStatus: exit.exitStatus }, 'exec exited');
      this.events.publish(this.record.namespace, {
        topic: '/tasks/exit',
        containerId: container.id,
        execId: exec.id,
        pid: exec.pid,
        exitStatus: exit.exitStatus,
        exitedAt: exit.exitedAt,
      });
      await this.save().catch((err) => this.log.error({ err }, 'saving state after exec exit'));
    };
    void exited.then(record, (err) => {
      this.log.error({ err, container: container.id, exec: exec.id }, 'lost track of the exec process; reporting it exited (255)');
      return record(exitedNow(UNKNOWN_EXIT_STATUS));
    });
  }

  private async killExec(container: ContainerRecord, execId: string, signal: number, all: boolean): Promise<void> {
    const exec = this.exec(container, execId);
    if (exec.status === 'created') throw failedPrecondition(`kill exec ${execId} in container ${container.id}: it has not started`);
    if (exec.status === 'stopped') {
      if (all) return;
      throw notFound(`kill exec ${execId} in container ${container.id}: process already finished`);
    }
    await this.kind.tasks.killExec(this, container, exec, signal);
  }

  private async deleteExec(id: string, execId: string): Promise<{ pid: number; exit: ExitInfo }> {
    return this.containerLocks.run(execKey(id, execId), async () => {
      const container = this.container(id);
      const exec = this.exec(container, execId);
      if (exec.status === 'running') throw failedPrecondition(`delete exec ${execId} in container ${id}: it is still running`);
      await this.kind.tasks.deleteExec(this, container, exec);
      const exit = this.forgetExec(container, exec);
      await this.save();
      this.log.info({ container: id, exec: execId }, 'exec deleted');
      // No event: runc's shim publishes TaskDelete for a container's init only.
      return { pid: exec.pid, exit };
    });
  }

  /** Drops an exec's record and latch; waiters of one that never ran are released. */
  private forgetExec(container: ContainerRecord, exec: ExecRecord): ExitInfo {
    const exit = exec.exit ?? exitedNow(UNKNOWN_EXIT_STATUS);
    container.execs = container.execs.filter((e) => e !== exec);
    const key = execKey(container.id, exec.id);
    this.execExits.get(key)?.settle(exit);
    this.execExits.delete(key);
    return exit;
  }

  /** Releases every exec of a container that is being deleted. */
  private async releaseExecs(container: ContainerRecord): Promise<void> {
    for (const exec of [...container.execs]) {
      await this.kind.tasks.deleteExec(this, container, exec);
      this.forgetExec(container, exec);
    }
  }

  /**
   * Kills the execs that still run (the init has exited) and waits until they are reaped, for
   * at most EXECS_END_MS: an exec whose exit cannot be learned must not hold the init's back.
   */
  private async endExecs(container: ContainerRecord): Promise<void> {
    const running = container.execs.filter((e) => e.status === 'running');
    if (running.length === 0) return;
    await Promise.all(running.map((e) => this.kind.tasks.killExec(this, container, e, 9).catch(() => undefined)));
    const ended = Promise.all(running.map((e) => this.execExits.get(execKey(container.id, e.id))?.promise));
    if ((await Promise.race([ended.then(() => true), delay(EXECS_END_MS).then(() => false)])) === false) {
      this.log.warn({ container: container.id }, 'execs still running after the init exited; reporting the init exit anyway');
    }
  }

  async resizePty(id: string, execId: string, size: WindowSize): Promise<void> {
    const container = this.container(id);
    await this.kind.tasks.resizePty(this, container, execId ? this.exec(container, execId) : null, size);
  }

  async closeStdin(id: string, execId: string): Promise<void> {
    const container = this.container(id);
    await this.kind.tasks.closeStdin(this, container, execId ? this.exec(container, execId) : null);
  }
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/**
 * Resolves on the event loop's next turn. A call that has just finished has its answer written
 * to its socket in the same turn (promise callbacks only), so whatever is reported after this
 * reaches containerd after that answer.
 */
const answersSent = () => new Promise<void>((resolve) => setImmediate(resolve));
