// The sandboxer of one kind: the registry of its sandboxes and the controller's lifecycle
// (create, start, status, wait, stop, shutdown, update, metrics). Kind-specific work is done by
// the kind's object for each sandbox; kuasard's own Task API endpoint for a sandbox is opened
// through injected TaskEndpoints, so that the engine knows nothing of ttrpc.
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { alreadyExists, failedPrecondition, notFound } from '../base/errors.js';
import type { EventSink } from '../base/events.js';
import { isValidId, validateId } from '../base/ids.js';
import type { SandboxKind, SandboxUpdate } from '../kind-api/kind.js';
import { KeyedMutex } from '../base/keyed-mutex.js';
import type { CgroupMetrics } from '../base/metrics.js';
import { exitedNow, nowIso, UNKNOWN_EXIT_STATUS, type ExitInfo, type PodSpec, type SandboxRecord } from '../base/model.js';
import { parseContainerRecord, parseSandboxRecord } from './record-schema.js';
import { CONTAINER_FILE_SUFFIX, CONTAINER_STATE_DIR, Sandbox, STATE_FILE } from './sandbox.js';

/** Serves the Task API of one sandbox; closed when the sandbox is shut down. */
export interface TaskEndpoint {
  readonly address: string;
  close(): Promise<void>;
}

/** kuasard's own Task API endpoints, one per sandbox whose kind names no other address. */
export interface TaskEndpoints {
  /** Refuses, at Create, a sandbox whose endpoint could not be opened later (its socket path would not fit). */
  check(sandbox: { id: string; dir: string }): void;
  open(sandbox: Sandbox): Promise<TaskEndpoint>;
}

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
  /** Why the sandbox cannot be served (it came back broken from a restart); empty otherwise. */
  reason: string;
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
    private readonly taskEndpoints: TaskEndpoints,
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
      // A dot-name is the kind's own (the vmm kind's warm VMs): no sandbox id starts with one.
      if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
      // Only a valid id ever names a sandbox directory, and containerd could not address another.
      if (isValidId(entry.name)) await this.recover(entry.name);
      else
        this.log.warn({ dir: join(this.kindDir, entry.name) }, 'a directory that names no sandbox is in the state directory; leaving it');
    }
  }

  /**
   * Takes over one sandbox an earlier run left. One whose Create or Start the daemon died in is
   * released at once: containerd forgets a sandbox whose Create or Start failed, without a
   * Shutdown (CRI's RunPodSandbox deletes its own record of it), so nobody else would. One that
   * cannot be served any more (its state file is unusable, or the kind finds its resources gone)
   * is kept, reported not ready with the reason, so that containerd can still stop and remove it.
   */
  private async recover(id: string): Promise<void> {
    const dir = join(this.kindDir, id);
    let record: SandboxRecord | null;
    try {
      record = await this.loadRecord(id, dir);
    } catch (err) {
      await this.keepUnreadable(await this.standIn(id, dir), err);
      return;
    }
    if (!record) {
      await this.discard(await this.standIn(id, dir), `it has no ${STATE_FILE}: kuasard died inside its Create`);
      return;
    }
    const sandbox = new Sandbox(record, dir, this.kind, this.events, this.log);
    if (record.phase === 'created') {
      await this.discard(sandbox, 'it never started: kuasard died inside its Create or Start');
      return;
    }
    // A Shutdown under way when the daemon died may have saved the phase without an exit.
    if (record.phase === 'stopped' && !record.exit) {
      record.exit = exitedNow(UNKNOWN_EXIT_STATUS);
      sandbox.stopped.settle(record.exit);
    }
    try {
      sandbox.handle = await this.kind.restoreSandbox(sandbox, record.kindState);
    } catch (err) {
      this.markUnusable(sandbox, errorText(err));
    }
    // Before the task socket serves again: a Wait that containerd sent to the previous run
    // (kept by the fd keeper) is answered at once and must find its container.
    await sandbox.adoptContainers();
    // A started sandbox keeps its task socket until Shutdown, stopped or not: containerd
    // still deletes its containers through it.
    if (record.taskAddress) await this.reopenEndpoint(sandbox);
    this.sandboxes.set(id, sandbox);
    await sandbox.saveAll();
    sandbox.log.info(
      { phase: record.phase, containers: record.containers.length, reason: sandbox.problem || undefined },
      'sandbox recovered',
    );
  }

  /**
   * The sandbox's record with its containers' records, null when it has no state file;
   * FailedPrecondition with the reason when one of them is unusable. A state file from before
   * the containers had files of their own lists them itself: read as well (a container in both,
   * after a crash amid the first save of such a sandbox, is taken from its own file, the later).
   */
  private async loadRecord(id: string, dir: string): Promise<SandboxRecord | null> {
    const unusable = (err: unknown) => failedPrecondition(`state of sandbox ${id} is unusable: ${errorText(err)}`);
    let text: string;
    try {
      text = await readFile(join(dir, STATE_FILE), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw unusable(err);
    }
    const record = parseSandboxRecord(text, { id, kind: this.kind.name });
    const containersDir = join(dir, CONTAINER_STATE_DIR);
    const files = await readdir(containersDir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [];
      throw unusable(err);
    });
    // Other names are temporary files of writes a crash cut short (state-file.ts).
    const names = files.filter((name) => name.endsWith(CONTAINER_FILE_SUFFIX)).sort();
    const own = await Promise.all(
      names.map(async (file) => {
        const text = await readFile(join(containersDir, file), 'utf8').catch((err: unknown) => {
          throw unusable(err);
        });
        return parseContainerRecord(text, { sandboxId: id, file, id: file.slice(0, -CONTAINER_FILE_SUFFIX.length) });
      }),
    );
    const ownIds = new Set(own.map((c) => c.id));
    record.containers = [...record.containers.filter((c) => !ownIds.has(c.id)), ...own];
    return record;
  }

  /** Releases a sandbox containerd no longer knows; kept (reported not ready) when that fails. */
  private async discard(sandbox: Sandbox, why: string): Promise<void> {
    sandbox.log.warn({ why }, 'releasing a sandbox from an earlier run that containerd has forgotten');
    try {
      await this.release(sandbox);
    } catch (err) {
      this.markUnusable(sandbox, `${why}; releasing it failed: ${errorText(err)}`);
      this.sandboxes.set(sandbox.id, sandbox);
    }
  }

  /** What stands for a sandbox whose state file cannot be loaded: see standInRecord. */
  private async standIn(id: string, dir: string): Promise<Sandbox> {
    const createdAt = await stat(dir).then(
      (s) => s.mtime.toISOString(),
      () => nowIso(),
    );
    return new Sandbox(standInRecord(id, this.kind.name, createdAt), dir, this.kind, this.events, this.log, { standIn: true });
  }

  /** The kind releases the pod's resources (through its object, or without one), then its directory goes. */
  private async release(sandbox: Sandbox): Promise<void> {
    if (sandbox.handle) await sandbox.handle.destroy();
    else await this.kind.destroyLost(sandbox);
    await sandbox.stopSaving();
    await rm(sandbox.dir, { recursive: true, force: true });
  }

  /**
   * A sandbox whose state file cannot be loaded is served from a stand-in record that is never
   * saved, so the file stays as it was for inspection until Shutdown removes the directory; the
   * kind's destroy finds what the pod holds without the record.
   */
  private async keepUnreadable(sandbox: Sandbox, err: unknown): Promise<void> {
    this.markUnusable(sandbox, errorText(err));
    // Started once, it may have containers containerd still deletes through its task socket.
    await this.reopenEndpoint(sandbox);
    this.sandboxes.set(sandbox.id, sandbox);
  }

  private async reopenEndpoint(sandbox: Sandbox): Promise<void> {
    try {
      const address = await this.openTaskAddress(sandbox);
      sandbox.record.taskAddress = address;
    } catch (err) {
      this.markUnusable(sandbox, `its task socket cannot be served: ${errorText(err)}`);
    }
  }

  /** The sandbox cannot be served: it is reported stopped (not ready, Wait answered), with the reason, until its Shutdown. */
  private markUnusable(sandbox: Sandbox, reason: string): void {
    sandbox.log.error({ reason }, 'sandbox cannot be served; reporting it not ready until containerd removes it');
    sandbox.problem ||= reason;
    sandbox.record.phase = 'stopped';
    sandbox.record.exit ??= exitedNow(UNKNOWN_EXIT_STATUS);
    sandbox.stopped.settle(sandbox.record.exit);
  }

  /** The kind's own address for the sandbox's Task API, or kuasard's socket for it, opened now. */
  private async openTaskAddress(sandbox: Sandbox): Promise<string> {
    const own = sandbox.handle?.taskAddress();
    if (own) return own;
    const endpoint = await this.taskEndpoints.open(sandbox);
    this.endpoints.set(sandbox.id, endpoint);
    return endpoint.address;
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
      this.taskEndpoints.check({ id: input.id, dir });
      await mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST') throw alreadyExists(`sandbox ${input.id} (state directory ${dir})`);
        throw err;
      });
      const record: SandboxRecord = {
        ...freshRecord(input.id, this.kind.name, 'created', nowIso()),
        namespace: input.namespace,
        netnsPath: input.netnsPath,
        pod: input.pod,
        ...(input.createInfo ? { createInfo: input.createInfo } : {}),
      };
      const sandbox = new Sandbox(record, dir, this.kind, this.events, this.log);
      try {
        await sandbox.save();
        sandbox.handle = await this.kind.createSandbox(sandbox);
        await sandbox.save();
      } catch (err) {
        sandbox.log.warn({ err }, 'sandbox create failed; releasing what it took');
        await this.release(sandbox).catch((e) => sandbox.log.error({ err: e }, 'cleanup after failed create'));
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
      try {
        const { pid } = await sandbox.kindSandbox().start();
        record.pid = pid;
        record.taskAddress = await this.openTaskAddress(sandbox);
        record.phase = 'ready';
        record.startedAt = nowIso();
      } catch (err) {
        await this.releaseAfterFailedStart(sandbox, err);
        throw err;
      }
      // Saved once the answer is out, not before: containerd forgets a pod whose Start failed
      // (no Shutdown follows), so a kuasard killed between saving 'ready' and answering would
      // keep, after its restart, a ready pod nobody removes. Killed after the answer but before
      // this save, the next run finds it 'created' and releases it; containerd's next Status or
      // Shutdown of it is answered NotFound, which CRI takes as gone.
      sandbox.saveAfterAnswer();
      sandbox.log.info({ address: record.taskAddress }, 'sandbox ready');
      return this.statusOf(sandbox);
    });
  }

  /**
   * containerd forgets a sandbox whose Start failed and sends no Shutdown for it (its own
   * podsandbox controller cleans up after itself): everything it took is released now.
   */
  private async releaseAfterFailedStart(sandbox: Sandbox, err: unknown): Promise<void> {
    sandbox.log.warn({ err }, 'sandbox start failed; releasing it, as containerd sends no Shutdown after a failed Start');
    try {
      await this.endpoints.get(sandbox.id)?.close();
      this.endpoints.delete(sandbox.id);
      await this.release(sandbox);
      this.sandboxes.delete(sandbox.id);
    } catch (releaseErr) {
      this.markUnusable(sandbox, `its Start failed (${errorText(err)}) and releasing it failed: ${errorText(releaseErr)}`);
    }
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
      reason: sandbox.problem,
    };
  }

  wait(id: string): Promise<ExitInfo> {
    return this.get(id).stopped.promise;
  }

  /** The counters of the pod as a whole (Controller Metrics). */
  metrics(id: string): Promise<CgroupMetrics> {
    return this.get(id).kindSandbox().metrics();
  }

  /** Controller Update: what changed in the pod's spec, applied by the kind. */
  async update(id: string, update: SandboxUpdate): Promise<void> {
    const sandbox = this.get(id);
    await this.locks.run(id, async () => {
      if (sandbox.record.phase === 'stopped') throw failedPrecondition(`update sandbox ${id}: it has stopped`);
      await sandbox.kindSandbox().update(update);
      await sandbox.save();
    });
  }

  /** Stop every container (SIGTERM, then SIGKILL after `graceMs`) and mark the sandbox exited. */
  async stop(id: string, graceMs: number): Promise<void> {
    const sandbox = this.get(id);
    await this.locks.run(id, async () => {
      if (sandbox.record.phase === 'stopped') return;
      await sandbox.stopAllTasks(graceMs);
      await sandbox.handle?.stop();
      const exit: ExitInfo = exitedNow(0);
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
      await this.release(sandbox);
      this.sandboxes.delete(id);
      sandbox.stopped.settle(sandbox.record.exit ?? exitedNow(0));
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
    await this.kind.close?.();
    if (this.sandboxes.size === 0) await this.kind.closeIdle?.();
  }
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * The record of a sandbox whose state is lost: stopped, with no container and no kind state. Its
 * pod is unknown (the values are placeholders): the kind's destroy finds what it holds without them.
 */
function standInRecord(id: string, kind: string, createdAt: string): SandboxRecord {
  return freshRecord(id, kind, 'stopped', createdAt);
}

/** A record with nothing done yet: no process, no task socket, no container, no kind state; pod fields empty. */
function freshRecord(id: string, kind: string, phase: SandboxRecord['phase'], createdAt: string): SandboxRecord {
  return {
    id,
    kind,
    namespace: '',
    netnsPath: '',
    pod: {
      name: '',
      namespace: '',
      uid: '',
      attempt: 0,
      hostname: '',
      logDirectory: '',
      dns: null,
      hostNetwork: false,
      hostIpc: false,
      pidMode: 'pod',
      cgroupParent: '',
      sysctls: {},
      labels: {},
      annotations: {},
    },
    phase,
    createdAt,
    startedAt: null,
    exit: null,
    pid: 0,
    taskAddress: '',
    kindState: null,
    containers: [],
  };
}
