// The sandboxer of one kind: the registry of its sandboxes and the controller's lifecycle
// (create, start, status, wait, stop, shutdown). Kind-specific work is delegated to the kind;
// the Task API endpoint of each sandbox is opened through an injected factory so that core
// knows nothing of ttrpc.
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from './errors.js';
import type { EventSink } from './events.js';
import { validateId } from './ids.js';
import type { SandboxKind } from './kind.js';
import { KeyedMutex } from './keyed-mutex.js';
import type { CgroupMetrics } from './metrics.js';
import type { ExitInfo, PodSpec, SandboxRecord } from './model.js';
import { nowIso } from './model.js';
import { MAX_SOCKET_PATH, Sandbox, STATE_FILE, TASK_SOCKET_NAME } from './sandbox.js';
import { readJson } from './state-file.js';

/** Serves the Task API of one sandbox; closed when the sandbox is shut down. */
export interface TaskEndpoint {
  readonly address: string;
  close(): Promise<void>;
}
export type TaskEndpointFactory = (sandbox: Sandbox) => Promise<TaskEndpoint>;

export interface CreateSandboxInput {
  id: string;
  namespace: string;
  netnsPath: string;
  pod: PodSpec;
  /** Kept in the record for the controller to show back (SandboxRecord.createInfo). */
  createInfo?: Record<string, unknown>;
}

export interface SandboxStatusView {
  id: string;
  ready: boolean;
  pid: number;
  createdAt: string;
  exitedAt: string | null;
  address: string;
  phase: SandboxRecord['phase'];
}

export class Sandboxer {
  private readonly sandboxes = new Map<string, Sandbox>();
  private readonly endpoints = new Map<string, TaskEndpoint>();
  private readonly locks = new KeyedMutex();
  private readonly kindDir: string;

  constructor(
    readonly kind: SandboxKind,
    stateDir: string,
    private readonly events: EventSink,
    private readonly openEndpoint: TaskEndpointFactory,
    private readonly log: Logger,
  ) {
    this.kindDir = join(stateDir, kind.name);
  }

  /**
   * Prepare the state directory and take over the sandboxes an earlier run of the daemon left:
   * their containers kept running while it was down, and containerd expects them to be served.
   */
  async init(): Promise<void> {
    await mkdir(this.kindDir, { recursive: true, mode: 0o700 });
    await this.kind.init();
    for (const entry of await readdir(this.kindDir, { withFileTypes: true })) {
      if (entry.isDirectory()) await this.recover(entry.name);
    }
  }

  private async recover(id: string): Promise<void> {
    const dir = join(this.kindDir, id);
    const log = this.log.child({ sandbox: id });
    const record = await readJson<SandboxRecord>(join(dir, STATE_FILE)).catch((err: NodeJS.ErrnoException) => {
      log.error({ err }, 'sandbox state from an earlier run is unreadable; leaving its directory for inspection');
      return null;
    });
    if (!record) return;
    const sandbox = new Sandbox(record, dir, this.kind, this.events, this.log);
    try {
      await this.kind.recover(sandbox);
      // A started sandbox keeps its task socket until Shutdown, stopped or not: containerd
      // still deletes its containers through it.
      if (record.taskAddress) {
        const endpoint = await this.openEndpoint(sandbox);
        this.endpoints.set(id, endpoint);
        record.taskAddress = endpoint.address;
      }
    } catch (err) {
      // The pod cannot be served any more: report it stopped so that containerd removes it.
      log.error({ err }, 'sandbox from an earlier run cannot be recovered; reporting it stopped');
      record.phase = 'stopped';
      record.exit ??= { exitStatus: 255, exitedAt: nowIso() };
      sandbox.stopped.settle(record.exit);
    }
    sandbox.adoptContainers();
    this.sandboxes.set(id, sandbox);
    await sandbox.save();
    log.info({ phase: record.phase, containers: record.containers.length }, 'sandbox recovered');
  }

  get(id: string): Sandbox {
    validateId('sandbox', id);
    const sandbox = this.sandboxes.get(id);
    if (!sandbox) throw notFound(`sandbox ${id}`);
    return sandbox;
  }

  list(): Sandbox[] {
    return [...this.sandboxes.values()];
  }

  async create(input: CreateSandboxInput): Promise<void> {
    validateId('sandbox', input.id);
    await this.locks.run(input.id, async () => {
      if (this.sandboxes.has(input.id)) throw alreadyExists(`sandbox ${input.id}`);
      const dir = join(this.kindDir, input.id);
      if (join(dir, TASK_SOCKET_NAME).length > MAX_SOCKET_PATH) {
        throw invalidArgument(`create sandbox ${input.id}: the id is too long for a task socket below ${this.kindDir}`);
      }
      await mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST') throw alreadyExists(`sandbox ${input.id} (state directory ${dir})`);
        throw err;
      });
      const record: SandboxRecord = {
        id: input.id,
        kind: this.kind.name,
        namespace: input.namespace,
        netnsPath: input.netnsPath,
        pod: input.pod,
        phase: 'created',
        createdAt: nowIso(),
        startedAt: null,
        exit: null,
        pid: 0,
        taskAddress: '',
        kindState: null,
        containers: [],
        ...(input.createInfo ? { createInfo: input.createInfo } : {}),
      };
      const sandbox = new Sandbox(record, dir, this.kind, this.events, this.log);
      try {
        await sandbox.save();
        await this.kind.prepare(sandbox);
        await sandbox.save();
      } catch (err) {
        sandbox.log.warn({ err }, 'sandbox create failed; releasing what it took');
        await this.kind.destroy(sandbox).catch((e) => sandbox.log.error({ err: e }, 'cleanup after failed create'));
        await rm(dir, { recursive: true, force: true });
        throw err;
      }
      this.sandboxes.set(input.id, sandbox);
      sandbox.log.info({ pod: `${input.pod.namespace}/${input.pod.name}`, netns: input.netnsPath || 'host' }, 'sandbox created');
    });
  }

  async start(id: string): Promise<SandboxStatusView> {
    const sandbox = this.get(id);
    return this.locks.run(id, async () => {
      const record = sandbox.record;
      if (record.phase === 'ready') return this.statusOf(sandbox);
      if (record.phase !== 'created') throw failedPrecondition(`start sandbox ${id}: it is ${record.phase}`);
      const { pid } = await this.kind.start(sandbox);
      const endpoint = await this.openEndpoint(sandbox);
      this.endpoints.set(id, endpoint);
      record.pid = pid;
      record.taskAddress = endpoint.address;
      record.phase = 'ready';
      record.startedAt = nowIso();
      await sandbox.save();
      sandbox.log.info({ address: endpoint.address }, 'sandbox ready');
      return this.statusOf(sandbox);
    });
  }

  status(id: string): SandboxStatusView {
    return this.statusOf(this.get(id));
  }

  private statusOf(sandbox: Sandbox): SandboxStatusView {
    const r = sandbox.record;
    return {
      id: r.id,
      ready: r.phase === 'ready',
      pid: r.pid,
      createdAt: r.createdAt,
      exitedAt: r.exit?.exitedAt ?? null,
      address: r.taskAddress,
      phase: r.phase,
    };
  }

  wait(id: string): Promise<ExitInfo> {
    return this.get(id).stopped.promise;
  }

  /** The counters of the pod as a whole (Controller Metrics). */
  metrics(id: string): Promise<CgroupMetrics> {
    const sandbox = this.get(id);
    return this.kind.metrics(sandbox);
  }

  /** Stop every container (SIGTERM, then SIGKILL after `graceMs`) and mark the sandbox exited. */
  async stop(id: string, graceMs: number): Promise<void> {
    const sandbox = this.get(id);
    await this.locks.run(id, async () => {
      if (sandbox.record.phase === 'stopped') return;
      await sandbox.stopAllTasks(graceMs);
      await this.kind.stop(sandbox);
      const exit: ExitInfo = { exitStatus: 0, exitedAt: nowIso() };
      sandbox.record.phase = 'stopped';
      sandbox.record.exit = exit;
      sandbox.record.pid = 0;
      await sandbox.save();
      sandbox.stopped.settle(exit);
      sandbox.log.info('sandbox stopped');
    });
  }

  /** Release everything the sandbox holds and forget it. */
  async shutdown(id: string): Promise<void> {
    const sandbox = this.get(id);
    await this.locks.run(id, async () => {
      if (sandbox.record.phase !== 'stopped') {
        await sandbox.stopAllTasks(0);
        sandbox.record.phase = 'stopped';
      }
      await sandbox.deleteAllTasks();
      await this.endpoints.get(id)?.close();
      this.endpoints.delete(id);
      await this.kind.destroy(sandbox);
      await rm(sandbox.dir, { recursive: true, force: true });
      this.sandboxes.delete(id);
      sandbox.stopped.settle(sandbox.record.exit ?? { exitStatus: 0, exitedAt: nowIso() });
      sandbox.log.info('sandbox shut down');
    });
  }

  /**
   * Close every endpoint (daemon exit); sandboxes and their containers stay as they are. With no
   * sandbox left, the kind also undoes its start-up work, so a stopped daemon leaves nothing.
   */
  async close(): Promise<void> {
    await Promise.all([...this.endpoints.values()].map((e) => e.close().catch(() => undefined)));
    this.endpoints.clear();
    if (this.sandboxes.size === 0) await this.kind.closeIdle?.();
  }
}
