// One container as the engine keeps it: its record, the kind's object for it, its init's and its
// execs' exit latches, and the rules of their lifecycle (runc's shim is the model for the order
// of events and for what each call does in each state).
import type { Logger } from 'pino';
import { alreadyExists, Code, failedPrecondition, notFound, RuntimeError } from '../base/errors.js';
import type { TaskEvent } from '../base/events.js';
import { Mutex } from '../base/keyed-mutex.js';
import type { CgroupMetrics } from '../base/metrics.js';
import { exitedNow, UNKNOWN_EXIT_STATUS, type ContainerRecord, type ExecRecord, type ExitInfo, type WindowSize } from '../base/model.js';
import type { KindCapabilities, KindContainer, KindExec, KindProcess, ProcessEnd } from '../kind-api/kind.js';
import { requireCapability, requireStdioSupport } from './capabilities.js';
import { answersSent, delay, ExitLatch } from './exit-latch.js';

/** How long an init's exit waits for its killed execs to be reaped. */
const EXECS_END_MS = 5_000;

/** What a container needs of the sandbox it belongs to. */
export interface ContainerHost {
  readonly log: Logger;
  readonly kind: { name: string; capabilities: KindCapabilities };
  /** Saves the container's record (a file of its own). */
  saveContainer(record: ContainerRecord): Promise<void>;
  publish(event: TaskEvent): void;
}

export interface ExecInput {
  execId: string;
  /** The OCI runtime-spec Process (decoded JSON). */
  spec: Record<string, unknown>;
  stdio: ExecRecord['stdio'];
}

export interface ProcessView {
  pid: number;
  status: ContainerRecord['status'];
  stdio: ContainerRecord['stdio'];
  exit: ExitInfo | null;
}

interface Exec {
  readonly record: ExecRecord;
  /** Null until started, and for one that did not survive a restart. */
  handle: KindExec | null;
  readonly exit: ExitLatch;
  /** The call in progress on the exec; its exit is recorded after it (see trackExit). */
  readonly lock: Mutex;
}

export class Container {
  readonly exit: ExitLatch;
  /** The call in progress on the container's init; its exit is recorded after it. */
  readonly lock = new Mutex();
  readonly log: Logger;
  private readonly execs = new Map<string, Exec>();
  /** Whether the init's Start failed: its process is ending by itself (see kill). */
  private startFailed = false;

  constructor(
    readonly record: ContainerRecord,
    /** Null only for a container that could not be taken over after a restart (reported exited). */
    private handle: KindContainer | null,
    private readonly host: ContainerHost,
  ) {
    this.log = host.log.child({ container: record.id });
    this.exit = ExitLatch.of(record.exit);
    for (const exec of record.execs) {
      this.execs.set(exec.id, { record: exec, handle: null, exit: ExitLatch.of(exec.exit), lock: new Mutex() });
    }
  }

  get id(): string {
    return this.record.id;
  }

  /** The kind's object; FailedPrecondition for a container the kind could not take over. */
  private get kind(): KindContainer {
    if (!this.handle) throw failedPrecondition(`container ${this.id} could not be taken over after a kuasard restart`);
    return this.handle;
  }

  /** Saves the kind's state of the container and its execs into the record, then the record. */
  async save(): Promise<void> {
    if (this.handle) this.record.kindState = this.handle.state();
    for (const exec of this.execs.values()) if (exec.handle) exec.record.kindState = exec.handle.state();
    return this.host.saveContainer(this.record);
  }

  // ---- the init ------------------------------------------------------------------------------

  /**
   * Records the init's exit when it ends, whatever happens to the caller that created it.
   *
   * The exit waits for the call in progress on the container (its lock) and for that call's
   * answer to go out. containerd answers an exit by deleting the task and closing the task's
   * connection; a call still running on it then fails with "ttrpc: closed". That happened to a
   * Kill: the process died of its SIGKILL while `runc kill` was still finishing, its Wait was
   * answered, and CRI's Delete closed the connection under the Kill. Likewise, a process that
   * ends while its Start is being answered is reported after that Start and its TaskStart
   * event, as runc's shim does.
   */
  trackExit(init: KindProcess): void {
    this.trackEnd(init.exited, this.lock, (end) => this.recordExit(end), 'task');
  }

  private async recordExit(end: ProcessEnd | ExitInfo): Promise<void> {
    // As runc's shim: the init's exit is reported after its execs', which containerd expects.
    await this.endExecs();
    const exit: ExitInfo = { exitStatus: end.exitStatus, exitedAt: end.exitedAt };
    this.record.status = 'stopped';
    this.record.exit = exit;
    this.exit.settle(exit);
    this.log.info({ pid: this.record.pid, exitStatus: exit.exitStatus }, 'task exited');
    this.publishEnd(this.record.pid, '', end);
    // The container may have been deleted meanwhile; saving the record is still right.
    await this.save().catch((err) => this.log.error({ err }, 'saving state after exit'));
  }

  /** Publishes an exit (the init's when `execId` is empty), with an OOM kill before it. */
  private publishEnd(pid: number, execId: string, end: ProcessEnd | ExitInfo): void {
    if ('oomKilled' in end && end.oomKilled) {
      this.log.warn({ exec: execId || undefined }, 'the OOM killer struck in the container');
      this.host.publish({ topic: '/tasks/oom', containerId: this.id });
    }
    this.host.publish({
      topic: '/tasks/exit',
      containerId: this.id,
      execId: execId || this.id,
      pid,
      exitStatus: end.exitStatus,
      exitedAt: end.exitedAt,
    });
  }

  /**
   * Settles `exited` into `record`, under `lock` and after the answer of the call in progress
   * (see trackExit); a process the kind lost track of is reported exited 255.
   */
  private trackEnd(
    exited: Promise<ProcessEnd>,
    lock: Mutex,
    record: (end: ProcessEnd | ExitInfo) => Promise<void>,
    what: 'task' | 'exec',
  ): void {
    const settle = (end: ProcessEnd | ExitInfo) =>
      lock.run(async () => {
        await answersSent();
        await record(end);
      });
    void exited.then(settle, (err: unknown) => {
      this.log.error({ err }, `lost track of the ${what} process; reporting it exited (255)`);
      return settle(exitedNow(UNKNOWN_EXIT_STATUS));
    });
  }

  async start(): Promise<number> {
    return this.lock.run(async () => {
      if (this.record.status !== 'created') {
        throw failedPrecondition(`start container ${this.id}: it is ${this.record.status}, not created`);
      }
      await this.kind.start().catch((err: unknown) => {
        this.startFailed = true;
        throw err;
      });
      // The process may have run to completion already; never move a stopped task back.
      if (this.record.status === 'created') this.record.status = 'running';
      this.host.publish({ topic: '/tasks/start', containerId: this.id, pid: this.record.pid });
      // Saved once the answer is out, not before: if kuasard dies in between, containerd saw the
      // Start fail and will delete the container without stopping it, which a container recorded
      // 'running' would refuse for ever ("cannot delete running task"); one recorded 'created'
      // is deleted (and its process killed) at once. The next run follows its process either way.
      // Not saved at all for a kind whose containers end with kuasard: the next run reports one
      // recorded 'created' or 'running' alike, exited (255) (adopt()), so the write would change
      // nothing (it was a third of the records a wasm container's life wrote).
      if (this.host.kind.capabilities.restart.containers) {
        void answersSent()
          .then(() => this.save())
          .catch((err) => this.log.error({ err }, 'saving state after start'));
      }
      return this.record.pid;
    });
  }

  /** Under the init's lock, so that its exit is reported only once the Kill is answered (see trackExit). */
  async kill(signal: number, all: boolean): Promise<void> {
    return this.lock.run(async () => {
      if (this.record.status === 'stopped') {
        // Like runc's shim: killing an exited process is not an error for `all`, but is for the init.
        if (all) return;
        throw notFound(`kill container ${this.id}: process already finished`);
      }
      await this.kind.kill(signal, all).catch((err: unknown) => {
        // A container whose Start failed ends by itself, and its runtime may refuse to signal it
        // meanwhile (runsc: "cannot signal container … in state created"). Answered as runc's shim
        // answers for a process already gone, so that containerd's delete waits for the exit; told
        // FailedPrecondition, it goes on at once, finds the task still created and leaves it in
        // place, and the pod can never be removed ("cannot delete running task").
        if (this.startFailed && err instanceof RuntimeError && err.code === Code.FailedPrecondition) {
          throw notFound(`kill container ${this.id}: its start failed and it is ending (${err.message})`);
        }
        throw err;
      });
    });
  }

  /** Signals a container that has not stopped, without waiting for a call in progress (stopping a sandbox). */
  async signalIfRunning(signal: number): Promise<void> {
    if (this.record.status === 'stopped') return;
    await this.handle?.kill(signal, true).catch((err) => this.log.debug({ err }, 'signalling the container'));
  }

  /** Releases what the container and its execs hold; the caller forgets it. */
  async release(): Promise<ExitInfo> {
    return this.lock.run(async () => {
      if (this.record.status === 'running' || this.record.status === 'paused') {
        throw failedPrecondition(`delete container ${this.id}: it is still ${this.record.status}`);
      }
      await this.releaseNow();
      return this.record.exit ?? exitedNow(0);
    });
  }

  /** Releases everything now (the container has stopped, or its sandbox is going). */
  async releaseNow(): Promise<void> {
    for (const exec of [...this.execs.values()]) await this.forgetExec(exec);
    await this.handle?.delete();
  }

  async pids(): Promise<number[]> {
    if (this.record.status === 'stopped') return [];
    return this.kind.pids();
  }

  /** Task Stats. A stopped container still answers while its cgroup exists (until Delete). */
  async stats(): Promise<CgroupMetrics> {
    return this.kind.stats();
  }

  async update(resources: Record<string, unknown>): Promise<void> {
    requireCapability(this.host.kind, 'updateResources');
    return this.lock.run(async () => {
      if (this.record.status === 'stopped') throw failedPrecondition(`update container ${this.id}: it has stopped`);
      await this.kind.update(resources);
      this.log.info('task resources updated');
    });
  }

  /** Pause or resume: from one state to the other through the kind, then saved and published. */
  async switchRunState(op: 'pause' | 'resume'): Promise<void> {
    requireCapability(this.host.kind, 'pauseResume');
    const [from, to, topic] =
      op === 'pause' ? (['running', 'paused', '/tasks/paused'] as const) : (['paused', 'running', '/tasks/resumed'] as const);
    return this.lock.run(async () => {
      if (this.record.status !== from) throw failedPrecondition(`${op} container ${this.id}: it is ${this.record.status}, not ${from}`);
      await this.kind[op]();
      // It may have exited meanwhile: never move a stopped task back.
      if (this.record.status === from) this.record.status = to;
      await this.save();
      this.log.info(`task ${to}`);
      this.host.publish({ topic, containerId: this.id });
    });
  }

  // ---- execs ---------------------------------------------------------------------------------

  private findExec(execId: string): Exec {
    const exec = this.execs.get(execId);
    if (!exec) throw notFound(`exec ${execId} in container ${this.id}`);
    return exec;
  }

  /** The init's (empty `execId`) or an exec's state. */
  view(execId: string): ProcessView {
    const record = execId ? this.findExec(execId).record : this.record;
    return { pid: record.pid, status: record.status, stdio: record.stdio, exit: record.exit };
  }

  async wait(execId: string): Promise<ExitInfo> {
    return (execId ? this.findExec(execId).exit : this.exit).promise;
  }

  /** Task Exec: records the process; it runs at Start. */
  async addExec(input: ExecInput): Promise<void> {
    requireCapability(this.host.kind, 'exec');
    requireStdioSupport(this.host.kind, input.stdio);
    return this.lock.run(async () => {
      if (this.record.status === 'stopped')
        throw failedPrecondition(`exec ${input.execId} in container ${this.id}: the container has stopped`);
      if (this.execs.has(input.execId)) throw alreadyExists(`exec ${input.execId} in container ${this.id}`);
      const record: ExecRecord = {
        id: input.execId,
        spec: input.spec,
        stdio: input.stdio,
        pid: 0,
        status: 'created',
        exit: null,
        kindState: null,
      };
      this.record.execs.push(record);
      this.execs.set(record.id, { record, handle: null, exit: new ExitLatch(), lock: new Mutex() });
      await this.save();
      this.host.publish({ topic: '/tasks/exec-added', containerId: this.id, execId: record.id });
    });
  }

  async startExec(execId: string): Promise<number> {
    const exec = this.findExec(execId);
    return exec.lock.run(async () => {
      const { record } = exec;
      if (record.status !== 'created')
        throw failedPrecondition(`start exec ${execId} in container ${this.id}: it is ${record.status}, not created`);
      let handle: KindExec;
      try {
        handle = await this.kind.exec({ record, log: this.log.child({ exec: execId }) });
      } catch (err) {
        // As runc's shim: an exec that could not start has ended, so its waiters (containerd
        // waits before it starts) are released instead of hanging.
        this.endExec(exec, exitedNow(UNKNOWN_EXIT_STATUS));
        await this.save();
        throw err;
      }
      exec.handle = handle;
      record.pid = handle.pid;
      record.status = 'running';
      this.trackExecExit(exec, handle.exited);
      await this.save();
      this.log.info({ exec: execId, pid: record.pid }, 'exec started');
      this.host.publish({ topic: '/tasks/exec-started', containerId: this.id, execId, pid: record.pid });
      return record.pid;
    });
  }

  /** As trackExit, for an exec: after the call in progress on it (its Start, a Kill) has been answered. */
  private trackExecExit(exec: Exec, exited: Promise<ProcessEnd>): void {
    this.trackEnd(
      exited,
      exec.lock,
      async (end) => {
        this.endExec(exec, { exitStatus: end.exitStatus, exitedAt: end.exitedAt });
        this.log.info({ exec: exec.record.id, pid: exec.record.pid, exitStatus: end.exitStatus }, 'exec exited');
        this.publishEnd(exec.record.pid, exec.record.id, end);
        await this.save().catch((err) => this.log.error({ err }, 'saving state after exec exit'));
      },
      'exec',
    );
  }

  private endExec(exec: Exec, exit: ExitInfo): void {
    exec.record.status = 'stopped';
    exec.record.exit = exit;
    exec.exit.settle(exit);
  }

  async killExec(execId: string, signal: number, all: boolean): Promise<void> {
    const exec = this.findExec(execId);
    return exec.lock.run(async () => {
      const { record } = exec;
      if (record.status === 'created') throw failedPrecondition(`kill exec ${execId} in container ${this.id}: it has not started`);
      if (record.status === 'stopped' || !exec.handle) {
        if (all) return;
        throw notFound(`kill exec ${execId} in container ${this.id}: process already finished`);
      }
      await exec.handle.kill(signal);
    });
  }

  async deleteExec(execId: string): Promise<{ pid: number; exit: ExitInfo }> {
    const exec = this.findExec(execId);
    return exec.lock.run(async () => {
      if (exec.record.status === 'running') throw failedPrecondition(`delete exec ${execId} in container ${this.id}: it is still running`);
      const exit = await this.forgetExec(exec);
      await this.save();
      this.log.info({ exec: execId }, 'exec deleted');
      // No event: runc's shim publishes TaskDelete for a container's init only.
      return { pid: exec.record.pid, exit };
    });
  }

  /** Releases an exec and drops its record; waiters of one that never ran are released. */
  private async forgetExec(exec: Exec): Promise<ExitInfo> {
    await exec.handle?.release();
    const exit = exec.record.exit ?? exitedNow(UNKNOWN_EXIT_STATUS);
    this.record.execs = this.record.execs.filter((e) => e !== exec.record);
    this.execs.delete(exec.record.id);
    exec.exit.settle(exit);
    return exit;
  }

  /**
   * Kills the execs that still run (the init has exited) and waits until they are reaped, for
   * at most EXECS_END_MS: an exec whose exit cannot be learned must not hold the init's back.
   */
  private async endExecs(): Promise<void> {
    const running = [...this.execs.values()].filter((e) => e.record.status === 'running');
    if (running.length === 0) return;
    await Promise.all(running.map((e) => e.handle?.kill(9).catch(() => undefined)));
    const ended = Promise.all(running.map((e) => e.exit.promise));
    if ((await Promise.race([ended.then(() => true), delay(EXECS_END_MS).then(() => false)])) === false) {
      this.log.warn('execs still running after the init exited; reporting the init exit anyway');
    }
  }

  private process(execId: string): KindProcess | null {
    return execId ? this.findExec(execId).handle : this.kind.init;
  }

  async resize(execId: string, size: WindowSize): Promise<void> {
    await this.process(execId)?.resize(size);
  }

  async closeStdin(execId: string): Promise<void> {
    await this.process(execId)?.closeStdin();
  }

  // ---- after a restart -----------------------------------------------------------------------

  /**
   * Follows again what the previous run left, as far as the kind's capabilities say it
   * survived: a container that did not is reported ended (255) now, and likewise its execs.
   */
  async adopt(restoreExec: (exec: ExecRecord) => Promise<KindExec>): Promise<void> {
    const { kind } = this.host;
    const survives = kind.capabilities.restart;
    // Execs first: an init's exit is reported after its execs'.
    for (const exec of this.execs.values()) {
      if (exec.record.status === 'created') continue;
      if (survives.execs && this.handle) {
        exec.handle = await restoreExec(exec.record);
        if (exec.record.status === 'running') this.trackExecExit(exec, exec.handle.exited);
      } else if (exec.record.status === 'running') {
        // Its stdio lived in the daemon that died, so it cannot be served again: report it
        // ended, so that its waiters (and the wait for its container's init) do not hang.
        this.endExec(exec, exitedNow(UNKNOWN_EXIT_STATUS));
        this.log.warn({ exec: exec.record.id }, 'exec from before the restart is reported exited (255)');
      }
    }
    if (this.record.status === 'stopped') return;
    if (this.handle && survives.containers) {
      this.trackExit(this.handle.init);
      if (!survives.stdio && (this.record.stdio.terminal || isStreamed(this.record.stdio))) {
        this.log.warn('the container kept running, but its output went through the previous kuasard and is no longer delivered');
      }
      return;
    }
    if (this.handle) {
      // Its log cannot say so: containerd stopped reading its output with the old daemon.
      this.log.warn(
        `the container ended with the previous kuasard (the ${kind.name} kind's containers do not outlive it); reporting exit status 255`,
      );
    }
    await this.recordExit(exitedNow(UNKNOWN_EXIT_STATUS));
  }
}

const isStreamed = (stdio: ContainerRecord['stdio']): boolean =>
  [stdio.stdin, stdio.stdout, stdio.stderr].some((endpoint) => endpoint.includes('://'));
