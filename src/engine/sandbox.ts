// One sandbox at run time: its record, the kind's object for it, its containers, and the waiters
// on its end. Every change to the record is saved before the call that made it returns, but for
// a Start (the sandbox's and a container's): saved just after its answer (see each for why).
// The sandbox's own fields go to state.json, each container's record to a file of its own
// (state.containers/<id>.json): a change to one container writes that container alone, where
// one file for the whole pod grew with its containers and was rewritten for each change.
import { join } from 'node:path';
import type { Logger } from 'pino';
import { alreadyExists, failedPrecondition, notFound } from '../base/errors.js';
import type { EventSink, TaskEvent } from '../base/events.js';
import { validateId } from '../base/ids.js';
import type { CgroupMetrics } from '../base/metrics.js';
import {
  exitedNow,
  UNKNOWN_EXIT_STATUS,
  type ContainerRecord,
  type ExitInfo,
  type Mount,
  type SandboxRecord,
  type Stdio,
  type WindowSize,
} from '../base/model.js';
import { StreamRegistry } from '../base/streams.js';
import type { KindSandbox, SandboxContext, SandboxKind } from '../kind-api/kind.js';
import { requireStdioSupport } from './capabilities.js';
import { Container, type ContainerHost, type ExecInput } from './container.js';
import { answersSent, delay, ExitLatch } from './exit-latch.js';
import { RecordFile } from './record-file.js';

export const STATE_FILE = 'state.json';
/** The directory of the containers' records, `<container id>.json` each, beside STATE_FILE. */
export const CONTAINER_STATE_DIR = 'state.containers';
export const CONTAINER_FILE_SUFFIX = '.json';

/** How long a sandbox whose isolation ended waits for its containers' exits before it answers Controller Wait. */
const CONTAINERS_END_MS = 10_000;

export interface TaskCreateInput {
  id: string;
  bundle: string;
  rootfs: Mount[];
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

export class Sandbox implements SandboxContext, ContainerHost {
  readonly log: Logger;
  readonly stopped: ExitLatch;
  readonly streams = new StreamRegistry();
  /** The kind's object; null until Create made it, and for a sandbox that cannot be served. */
  handle: KindSandbox | null = null;
  /** Why the sandbox cannot be served, or why it ended by itself (reported with its status); empty otherwise. */
  problem = '';
  private readonly containers = new Map<string, Container>();
  /** Containers whose Create is under way: a second Create of one id is refused, not run twice. */
  private readonly creating = new Set<string>();
  /**
   * Whether save() writes the record: not for a stand-in of a state file that could not be loaded
   * (that file stays for inspection), nor once the sandbox's directory is being removed.
   */
  private saving: boolean;
  private readonly podFile: RecordFile;
  /** Each container's record file, while it has one or its removal is under way. */
  private readonly containerFiles = new Map<string, RecordFile>();

  constructor(
    readonly record: SandboxRecord,
    readonly dir: string,
    readonly kind: SandboxKind,
    private readonly events: EventSink,
    log: Logger,
    options: { standIn?: boolean } = {},
  ) {
    this.saving = !options.standIn;
    this.podFile = new RecordFile(join(dir, STATE_FILE));
    this.log = log.child({ sandbox: record.id });
    this.stopped = ExitLatch.of(record.exit);
  }

  get id(): string {
    return this.record.id;
  }

  /** The kind's object; FailedPrecondition for a sandbox that has none (see `handle`). */
  kindSandbox(): KindSandbox {
    if (!this.handle) throw failedPrecondition(`sandbox ${this.id} cannot be served${this.problem ? `: ${this.problem}` : ''}`);
    return this.handle;
  }

  publish(event: TaskEvent): void {
    this.events.publish(this.record.namespace, event);
  }

  /**
   * Saves no more and waits for a save under way: the directory is about to be removed. An exit
   * recorded while Shutdown runs saves after its waiters are told, and its temporary file once
   * made the directory's removal fail (ENOTEMPTY).
   */
  async stopSaving(): Promise<void> {
    this.saving = false;
    await this.saved();
  }

  /**
   * Saves once the answer of the call in progress is out (Sandboxer.start says why), queued
   * with the other writes: a later save, stopSaving() and saved() come after it.
   */
  saveAfterAnswer(): void {
    this.podFile.delayNext(answersSent);
    this.save().catch((err) => this.log.error({ err }, 'saving state after the answer'));
  }

  /** Resolves once every save asked for so far has been written (or has failed). */
  async saved(): Promise<void> {
    await Promise.all([this.podFile.settled(), ...[...this.containerFiles.values()].map((f) => f.settled())]);
  }

  /** Writes the sandbox's own record (with the kind's state); its containers save their own. */
  async save(): Promise<void> {
    if (!this.saving) return;
    if (this.handle) this.record.kindState = this.handle.state();
    return this.podFile.write(() => ({ ...this.record, containers: [] }));
  }

  /**
   * Writes every container's record, then the sandbox's: after a restart, what adoption changed,
   * and the containers of a state file from before records were split (all in state.json) each
   * into a file of its own before state.json drops them.
   */
  async saveAll(): Promise<void> {
    await Promise.all([...this.containers.values()].map((c) => c.save()));
    await this.save();
  }

  /** Writes one container's record, unless it has been deleted (a late exit must not bring its file back). */
  async saveContainer(record: ContainerRecord): Promise<void> {
    if (!this.saving || this.containers.get(record.id)?.record !== record) return;
    return this.containerFile(record.id).write(() => record);
  }

  private containerFile(id: string): RecordFile {
    let file = this.containerFiles.get(id);
    if (!file) {
      file = new RecordFile(join(this.dir, CONTAINER_STATE_DIR, `${id}${CONTAINER_FILE_SUFFIX}`), true);
      this.containerFiles.set(id, file);
    }
    return file;
  }

  /** Removes a deleted container's record, after its writes; a container created again under its id queues behind. */
  private async removeContainerFile(id: string): Promise<void> {
    const file = this.containerFile(id);
    await file.remove();
    if (this.containerFiles.get(id) === file && !this.containers.has(id)) this.containerFiles.delete(id);
  }

  /**
   * The kind reports that the pod's isolation ended by itself: the sandbox is no longer ready,
   * its containers are ended (their exits reported as they come), then Controller Wait is answered.
   */
  isolationEnded(reason: string): void {
    if (this.record.phase !== 'ready') return;
    this.log.error({ reason }, "the sandbox's isolation ended; stopping its containers and reporting it not ready");
    this.problem ||= reason;
    this.record.phase = 'stopped';
    const exit = exitedNow(UNKNOWN_EXIT_STATUS);
    this.record.exit = exit;
    void (async () => {
      const running = [...this.containers.values()];
      await Promise.all(running.map((c) => c.signalIfRunning(9)));
      await Promise.race([Promise.all(running.map((c) => c.exit.promise)), delay(CONTAINERS_END_MS)]);
      await this.save().catch((err) => this.log.error({ err }, 'saving state after the isolation ended'));
      this.stopped.settle(exit);
    })();
  }

  container(id: string): Container {
    const container = this.containers.get(id);
    if (!container) throw notFound(`container ${id} in sandbox ${this.id}`);
    return container;
  }

  async createTask(input: TaskCreateInput): Promise<number> {
    validateId('container', input.id);
    requireStdioSupport(this.kind, input.stdio);
    if (this.containers.has(input.id) || this.creating.has(input.id)) throw alreadyExists(`container ${input.id}`);
    if (this.record.phase !== 'ready') {
      throw failedPrecondition(`create container ${input.id}: sandbox ${this.id} is ${this.record.phase}, not ready`);
    }
    this.creating.add(input.id);
    try {
      const record: ContainerRecord = { ...input, pid: 0, status: 'created', exit: null, kindState: null, execs: [] };
      const log = this.log.child({ container: input.id });
      // The kind undoes its own steps when this fails.
      const handle = await this.kindSandbox().createContainer({ record, log });
      record.pid = handle.init.pid;
      const container = new Container(record, handle, this);
      this.record.containers.push(record);
      this.containers.set(record.id, container);
      container.trackExit(handle.init);
      await container.save();
      log.info({ pid: record.pid }, 'task created');
      this.publish({ topic: '/tasks/create', containerId: record.id, bundle: record.bundle, pid: record.pid, stdio: record.stdio });
      return record.pid;
    } finally {
      this.creating.delete(input.id);
    }
  }

  async startTask(id: string, execId = ''): Promise<number> {
    const container = this.container(id);
    return execId ? container.startExec(execId) : container.start();
  }

  taskState(id: string, execId = ''): TaskStateView {
    const container = this.container(id);
    return { id, bundle: container.record.bundle, ...container.view(execId) };
  }

  async killTask(id: string, signal: number, all: boolean, execId = ''): Promise<void> {
    const container = this.container(id);
    return execId ? container.killExec(execId, signal, all) : container.kill(signal, all);
  }

  async waitTask(id: string, execId = ''): Promise<ExitInfo> {
    return this.container(id).wait(execId);
  }

  async deleteTask(id: string, execId = ''): Promise<{ pid: number; exit: ExitInfo }> {
    const container = this.container(id);
    if (execId) return container.deleteExec(execId);
    const exit = await container.release();
    this.forget(container);
    if (this.saving) await this.removeContainerFile(id);
    container.log.info('task deleted');
    const { pid } = container.record;
    this.publish({ topic: '/tasks/delete', containerId: id, execId: '', pid, exitStatus: exit.exitStatus, exitedAt: exit.exitedAt });
    return { pid, exit };
  }

  private forget(container: Container): void {
    this.record.containers = this.record.containers.filter((c) => c !== container.record);
    this.containers.delete(container.id);
  }

  async taskPids(id: string): Promise<number[]> {
    return this.container(id).pids();
  }

  async taskStats(id: string): Promise<CgroupMetrics> {
    return this.container(id).stats();
  }

  async updateTask(id: string, resources: Record<string, unknown>): Promise<void> {
    return this.container(id).update(resources);
  }

  async pauseTask(id: string): Promise<void> {
    return this.container(id).switchRunState('pause');
  }

  async resumeTask(id: string): Promise<void> {
    return this.container(id).switchRunState('resume');
  }

  async execProcess(id: string, input: ExecInput): Promise<void> {
    validateId('exec', input.execId);
    return this.container(id).addExec(input);
  }

  async resizePty(id: string, execId: string, size: WindowSize): Promise<void> {
    return this.container(id).resize(execId, size);
  }

  async closeStdin(id: string, execId: string): Promise<void> {
    return this.container(id).closeStdin(execId);
  }

  /**
   * Ends every container: SIGTERM (when there is time for it), then SIGKILL for whatever is
   * left when the grace period runs out.
   */
  async stopAllTasks(graceMs: number): Promise<void> {
    const running = () => [...this.containers.values()].filter((c) => c.record.status !== 'stopped');
    const allExited = () => Promise.all(running().map((c) => c.exit.promise));
    if (graceMs > 0 && running().length > 0) {
      await Promise.all(running().map((c) => c.signalIfRunning(15)));
      await Promise.race([allExited(), delay(graceMs)]);
    }
    if (running().length > 0) {
      await Promise.all(running().map((c) => c.signalIfRunning(9)));
      await allExited();
    }
  }

  /** Releases every container's resources (after they have stopped). */
  async deleteAllTasks(): Promise<void> {
    for (const container of [...this.containers.values()]) {
      await container.releaseNow();
      this.forget(container);
    }
  }

  /**
   * After a daemon restart: the kind's objects for every container again, and what their
   * processes did while the daemon was down (see Container.adopt).
   */
  async adoptContainers(): Promise<void> {
    const handle = this.handle;
    for (const record of this.record.containers) {
      const log = this.log.child({ container: record.id });
      const kindContainer = handle
        ? await handle.restoreContainer({ record, log }, record.kindState).catch((err: unknown) => {
            log.error({ err }, 'the kind cannot take the container over; reporting it exited (255)');
            return null;
          })
        : null;
      const container = new Container(record, kindContainer, this);
      this.containers.set(record.id, container);
      await container.adopt((exec) => kindContainer!.restoreExec({ record: exec, log: log.child({ exec: exec.id }) }, exec.kindState));
    }
  }
}
