// An in-memory kind for unit tests of the engine and the services: its sandboxes and containers
// hold nothing, its processes run until the test ends them (or a kill does), and it notes every
// call it gets. A test can make any step fail, and a sandbox's isolation end.
import type { Platform, SavedState } from '../base/model.js';
import { internal } from '../base/errors.js';
import type {
  ContainerContext,
  ExecContext,
  KindCapabilities,
  KindContainer,
  KindExec,
  KindSandbox,
  SandboxContext,
  SandboxKind,
} from '../kind-api/kind.js';
import type { TaskEndpoints } from '../engine/sandboxer.js';
import { fakeProcess, type FakeProcess } from './fake-process.js';

/** The steps a test can make fail. */
export type TestKindStep = 'createSandbox' | 'start' | 'restoreSandbox' | 'createContainer' | 'startContainer' | 'exec' | 'destroy';

export interface TestKindOptions {
  name?: string;
  capabilities?: Partial<Omit<KindCapabilities, 'restart'>> & { restart?: Partial<KindCapabilities['restart']> };
  /** How a kill ends a process; default: at once, with 128 + the signal. */
  onKill?: (process: FakeProcess, signal: number) => Promise<void>;
  /** The Task API address the kind's sandboxes name themselves; default: none (kuasard's own). */
  taskAddress?: string;
}

const ALL_FEATURES: KindCapabilities = {
  exec: true,
  terminal: true,
  pauseResume: true,
  updateResources: true,
  streamingIo: true,
  restart: { containers: true, execs: false, stdio: false },
};

export class TestKind implements SandboxKind {
  readonly name: string;
  readonly capabilities: KindCapabilities;
  /** Every call, in order: "<step> <sandbox or container or exec id>[ <details>]". */
  readonly calls: string[] = [];
  /** Steps that fail, for every id or for the ids listed. */
  readonly failing = new Map<TestKindStep, Set<string> | 'all'>();
  /** The processes started, by container id or exec id (ids are unique in these tests). */
  readonly processes = new Map<string, FakeProcess>();
  /** A started process ends at once, before its Start is answered. */
  endAtStart = false;
  private readonly sandboxes = new Map<string, SandboxContext>();
  private nextPid = 100;

  constructor(private readonly options: TestKindOptions = {}) {
    this.name = options.name ?? 'fake';
    this.capabilities = {
      ...ALL_FEATURES,
      ...options.capabilities,
      restart: { ...ALL_FEATURES.restart, ...options.capabilities?.restart },
    };
  }

  /** Makes `step` fail, for every id or only for `ids`. */
  fail(step: TestKindStep, ...ids: string[]): void {
    this.failing.set(step, ids.length > 0 ? new Set(ids) : 'all');
  }

  /** The isolation of sandbox `id` ends: its processes die with it, and the engine is told. */
  die(id: string, reason = 'the test ended it'): void {
    for (const process of this.processes.values()) process.end(137);
    this.sandboxes.get(id)?.isolationEnded(reason);
  }

  private step(step: TestKindStep, id: string): void {
    this.calls.push(`${step} ${id}`);
    const failing = this.failing.get(step);
    if (failing === 'all' || failing?.has(id)) throw internal(`${step} ${id}: injected failure`);
  }

  private spawn(id: string): FakeProcess {
    const process = fakeProcess(this.nextPid++);
    this.processes.set(id, process);
    return process;
  }

  private async kill(id: string, signal: number): Promise<void> {
    const process = this.processes.get(id);
    if (!process) return;
    if (this.options.onKill) await this.options.onKill(process, signal);
    else process.end(128 + signal);
  }

  async init(): Promise<void> {}

  platform(): Platform {
    return { os: 'linux', architecture: 'amd64', variant: '' };
  }

  async createSandbox(context: SandboxContext): Promise<KindSandbox> {
    this.step('createSandbox', context.record.id);
    return this.sandbox(context, { created: true });
  }

  async restoreSandbox(context: SandboxContext, saved: SavedState | null): Promise<KindSandbox> {
    this.step('restoreSandbox', context.record.id);
    return this.sandbox(context, { created: saved !== null });
  }

  async destroyLost(context: SandboxContext): Promise<void> {
    this.calls.push(`destroyLost ${context.record.id}`);
  }

  private sandbox(context: SandboxContext, state: { created: boolean }): KindSandbox {
    const id = context.record.id;
    this.sandboxes.set(id, context);
    return {
      state: () => ({ version: 1, data: state }),
      start: async () => {
        this.step('start', id);
        return { pid: 0 };
      },
      taskAddress: () => this.options.taskAddress,
      stop: async () => void this.calls.push(`stop ${id}`),
      destroy: async () => {
        this.step('destroy', id);
        this.sandboxes.delete(id);
      },
      metrics: async () => ({ version: 2, v2: { pids: { current: 1n, limit: 10n } } }),
      update: async (update) => void this.calls.push(`update ${id} ${update.fields.join(',')}`),
      namespaces: () => ({}),
      createContainer: async (container) => {
        this.step('createContainer', container.record.id);
        return this.container(container, this.spawn(container.record.id));
      },
      restoreContainer: async (container) => {
        this.calls.push(`restoreContainer ${container.record.id}`);
        return this.container(container, this.processes.get(container.record.id) ?? this.spawn(container.record.id));
      },
    };
  }

  private container(context: ContainerContext, init: FakeProcess): KindContainer {
    const id = context.record.id;
    const note = (what: string) => async () => void this.calls.push(`${what} ${id}`);
    return {
      init: {
        pid: init.pid,
        exited: init.exited,
        resize: async (size) => void this.calls.push(`resize ${id} ${size.width}x${size.height}`),
        closeStdin: note('closeStdin'),
      },
      state: () => null,
      start: async () => {
        this.step('startContainer', id);
        if (this.endAtStart) init.end(3);
      },
      kill: async (signal, all) => {
        this.calls.push(`kill ${id} ${signal}${all ? ' all' : ''}`);
        await this.kill(id, signal);
      },
      delete: note('delete'),
      pids: async () => [init.pid],
      stats: async () => ({ version: 2, v2: { pids: { current: 1n, limit: 10n } } }),
      update: note('update'),
      pause: note('pause'),
      resume: note('resume'),
      exec: async (exec) => {
        this.step('exec', exec.record.id);
        const process = this.spawn(exec.record.id);
        if (this.endAtStart) process.end(3);
        return this.exec(exec, process);
      },
      restoreExec: async (exec) => this.exec(exec, this.processes.get(exec.record.id) ?? fakeProcess(0)),
    };
  }

  private exec(context: ExecContext, process: FakeProcess): KindExec {
    const id = context.record.id;
    return {
      pid: process.pid,
      exited: process.exited,
      kill: async (signal) => {
        this.calls.push(`kill ${id} ${signal}`);
        await this.kill(id, signal);
      },
      resize: async (size) => void this.calls.push(`resize ${id} ${size.width}x${size.height}`),
      closeStdin: async () => void this.calls.push(`closeStdin ${id}`),
      release: async () => void this.calls.push(`deleteExec ${id}`),
      state: () => null,
    };
  }
}

/** Task endpoints that serve nothing: each sandbox gets `address(id)` as its Task API address. */
export function fakeTaskEndpoints(address: (sandboxId: string) => string = (id) => `fake://${id}`): TaskEndpoints {
  return {
    check: () => undefined,
    open: async (sandbox) => ({ address: address(sandbox.id), close: async () => undefined }),
  };
}
