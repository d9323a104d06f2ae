// The container rate through the Task API of the kind whose containers run inside kuasard
// (IN_KUASARD_KIND, bench/kinds.ts): one pod of that kind is opened through CRI, and
// then kuasard's Task API on that pod's own socket is driven directly, the way containerd's task
// service drives a shim (Create, Start, Wait, Kill, Delete), with a fixed number of containers in
// flight. CRI stays out of the timed window: this is the runtime's own rate, the figure a shim
// such as runwasi's publishes.
//
// The containers are this module's own: a bundle directory with an OCI config.json per container,
// and a rootfs as containerd's overlayfs snapshotter gives a CRI container: an overlay mount whose
// lower layer is one directory holding the image's files, with an upper and a work directory of
// the container's own (so each container's rootfs is a mount, and a device, of its own). stdout and
// stderr are FIFOs that this module makes and drains, as containerd does.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Task } from '../api/containerd/runtime/task/v3/shim_pb.js';
import { Controller } from '../api/containerd/services/sandbox/v1/sandbox_pb.js';
import { Code, RuntimeError } from '../base/errors.js';
import type { Environment } from '../devenv/environment.js';
import { run } from '../devenv/exec.js';
import { writeImageFiles } from '../devenv/images.js';
import type { KindBenchmark } from '../kind-api/registration.js';
import { fifoReader } from '../io/fifo.js';
import { createGrpcClient } from '../rpc/grpc.js';
import { TtrpcClient, typedClient, type TypedClient } from '../rpc/ttrpc/index.js';
import { inPool, removePod } from './pods.js';
import type { BenchProgress } from './progress.js';
import type { TaskRateResult, TaskRateRun } from './results.js';
import { summarize } from './stats.js';

/** Any Task API call that takes longer has hung: it fails the container instead of the run. */
const CALL_TIMEOUT_MS = 60_000;
/** How long the final clean-up waits for a killed container's exit. */
const CLEANUP_WAIT_MS = 10_000;
const SIGKILL = 9;
const TASK_ADDRESS_SCHEME = 'ttrpc+unix://';

export interface TaskRateOptions {
  env: Environment;
  /** The kind's CRI handler, and the kind's name (its controller socket). */
  handler: string;
  kind: string;
  /** The image and the command of each run: one that stays up until killed, one that exits 0. */
  workloads: NonNullable<KindBenchmark['inKuasard']>['taskRate'];
  hostNetwork: boolean;
  longRunning: number;
  shortLived: number;
  concurrency: number;
  progress: BenchProgress;
  signal: AbortSignal;
}

type TaskClient = TypedClient<typeof Task.method>;

/** When one container's timed work began and ended, on the monotonic clock (performance.now()). */
export interface Span {
  sentAt: number;
  doneAt: number;
}

/**
 * Fills `entry` (so that what was measured survives a failure or an interruption halfway):
 * opens the pod, runs both timed runs, and removes every container, bundle and the pod.
 */
export async function measureTaskRate(options: TaskRateOptions, entry: TaskRateResult): Promise<void> {
  const session = new TaskSession(options, join(options.env.paths.dir, 'bench-task-rate'));
  try {
    await session.open(entry);
    await session.warmUp();
    options.signal.throwIfAborted();
    entry.longRunning = { containers: options.longRunning, ms: [], failures: [] };
    await session.longRunning(entry.longRunning);
    options.signal.throwIfAborted();
    entry.shortLived = { containers: options.shortLived, ms: [], failures: [] };
    await session.shortLived(entry.shortLived);
  } finally {
    entry.failures.push(...(await session.close()));
  }
}

/**
 * The OCI runtime spec of one container: only what a kind whose containers run in kuasard reads
 * (the command); `root.path` as containerd writes it, though the kind mounts the rootfs mounts it
 * is given in a directory of its own.
 */
export function bundleSpec(args: readonly string[]) {
  return {
    ociVersion: '1.1.0',
    process: { terminal: false, user: { uid: 0, gid: 0 }, args: [...args], env: [], cwd: '/' },
    root: { path: 'rootfs', readonly: true },
  };
}

/**
 * Records a run's outcomes in `run`: each container's time, each failure; and, when every
 * container succeeded, the wall time from the first Create sent to the last reply, and the rate.
 * Containers that never ran because the run was interrupted (`interrupted`: the reason they were
 * rejected with) count as one failure.
 */
export function recordRun(
  run: TaskRateRun,
  ids: readonly string[],
  outcomes: readonly PromiseSettledResult<Span>[],
  interrupted?: unknown,
): void {
  const spans: Span[] = [];
  let notRun = 0;
  outcomes.forEach((outcome, i) => {
    if (outcome.status === 'fulfilled') {
      spans.push(outcome.value);
      run.ms.push(outcome.value.doneAt - outcome.value.sentAt);
    } else if (interrupted !== undefined && outcome.reason === interrupted) {
      notRun += 1;
    } else {
      run.failures.push(`${ids[i]}: ${(outcome.reason as Error).message}`);
    }
  });
  if (notRun > 0) run.failures.push(`${notRun} container${notRun === 1 ? '' : 's'} not run: ${(interrupted as Error).message}`);
  if (run.ms.length > 0) run.summary = summarize(run.ms);
  if (run.failures.length > 0 || spans.length === 0) return;
  const first = Math.min(...spans.map((s) => s.sentAt));
  const last = Math.max(...spans.map((s) => s.doneAt));
  run.wallMs = last - first;
  run.perSecond = spans.length / (run.wallMs / 1000);
  // performance.now() counts from timeOrigin (epoch ms): the window in kuasard's log clock.
  run.startedAt = performance.timeOrigin + first;
  run.endedAt = performance.timeOrigin + last;
}

/** One pod and the containers this module runs in it through its Task API. */
class TaskSession {
  private podId: string | undefined;
  private client: TtrpcClient | undefined;
  private task: TaskClient | undefined;
  private readonly rootfs: string;
  private readonly bundles: string;
  private readonly fifos: string;
  /** Each container's upper and work directories of its overlay. */
  private readonly layers: string;
  /** Containers that may exist in kuasard: asked to be created, not yet deleted. */
  private readonly live = new Set<string>();
  /** Each container's stdout and stderr readers, until it is deleted. */
  private readonly readers = new Map<string, Readable[]>();

  constructor(
    private readonly options: TaskRateOptions,
    private readonly workDir: string,
  ) {
    this.rootfs = join(workDir, 'rootfs');
    this.bundles = join(workDir, 'bundles');
    this.fifos = join(workDir, 'fifos');
    this.layers = join(workDir, 'layers');
  }

  async open(entry: TaskRateResult): Promise<void> {
    const { env } = this.options;
    await rm(this.workDir, { recursive: true, force: true });
    for (const dir of [this.rootfs, this.bundles, this.fifos, this.layers]) await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeImageFiles(this.options.workloads.image, this.rootfs);

    const config = env.podConfig({ name: 'bench-task-rate', hostNetwork: this.options.hostNetwork });
    const { podSandboxId } = await env.cri.runtime.runPodSandbox({ config, runtimeHandler: this.options.handler });
    this.podId = podSandboxId;
    entry.podId = podSandboxId;
    const socket = await this.taskSocket(podSandboxId);
    entry.taskSocket = socket;
    this.client = await TtrpcClient.connect(socket, { timeoutMs: CALL_TIMEOUT_MS });
    this.task = typedClient(this.client, Task);
  }

  /** The pod's Task API socket, as containerd learns it: from the sandbox controller's Status. */
  private async taskSocket(podId: string): Promise<string> {
    const controllerSocket = this.options.env.kuasarSockets[this.options.kind];
    if (controllerSocket === undefined) throw new Error(`kuasard has no controller socket for the ${this.options.kind} kind`);
    const controller = createGrpcClient(Controller, `unix://${controllerSocket}`, {
      metadata: { 'containerd-namespace': 'k8s.io' },
      timeoutMs: CALL_TIMEOUT_MS,
    });
    try {
      const { address } = await controller.status({ sandboxId: podId });
      if (!address.startsWith(TASK_ADDRESS_SCHEME))
        throw new Error(`sandbox ${podId}: task address "${address}" is not ${TASK_ADDRESS_SCHEME}<path>`);
      return address.slice(TASK_ADDRESS_SCHEME.length);
    } finally {
      controller.close();
    }
  }

  /** One container of each run's command, untimed: the first ones pay for what later ones reuse. */
  async warmUp(): Promise<void> {
    const { longRunning, shortLived } = this.options.workloads;
    const [long, short] = ['warm-long', 'warm-short'];
    await this.prepare([long], longRunning);
    await this.prepare([short], shortLived);
    await this.startOne(long);
    await this.stopOne(long);
    await this.runOne(short);
  }

  async longRunning(run: TaskRateRun): Promise<void> {
    const { progress, signal, concurrency } = this.options;
    const ids = containerIds('long', run.containers);
    await this.prepare(ids, this.options.workloads.longRunning);
    progress.begin(`Task API: ${run.containers} long-running ${this.options.kind} containers, ${concurrency} in flight`, run.containers);
    const outcomes = await inPool(
      ids,
      concurrency,
      async (id) => {
        const span = await this.startOne(id);
        progress.tick(`${(span.doneAt - span.sentAt).toFixed(0)} ms`);
        return span;
      },
      signal,
    );
    recordRun(run, ids, outcomes, signal.reason);
    progress.end(rateText(run));
    // Untimed: every container of the run goes, whether or not it started.
    const created = ids.filter((id) => this.live.has(id));
    progress.note(`  · stopping ${created.length} ${this.options.kind} containers`);
    const stops = await inPool(created, concurrency, (id) => this.stopOne(id));
    for (const stop of stops) if (stop.status === 'rejected') run.failures.push(`removal: ${(stop.reason as Error).message}`);
  }

  async shortLived(run: TaskRateRun): Promise<void> {
    const { progress, signal, concurrency } = this.options;
    const ids = containerIds('short', run.containers);
    await this.prepare(ids, this.options.workloads.shortLived);
    progress.begin(`Task API: ${run.containers} short-lived ${this.options.kind} containers, ${concurrency} in flight`, run.containers);
    const outcomes = await inPool(
      ids,
      concurrency,
      async (id) => {
        const span = await this.runOne(id);
        progress.tick(`${(span.doneAt - span.sentAt).toFixed(0)} ms`);
        return span;
      },
      signal,
    );
    recordRun(run, ids, outcomes, signal.reason);
    progress.end(rateText(run));
  }

  /** Bundles, FIFOs and their readers for containers about to run: none of it is timed. */
  private async prepare(ids: readonly string[], command: readonly string[]): Promise<void> {
    const spec = `${JSON.stringify(bundleSpec(command))}\n`;
    for (const id of ids) {
      await mkdir(join(this.bundles, id));
      await writeFile(join(this.bundles, id, 'config.json'), spec);
      for (const dir of Object.values(this.layerDirs(id))) await mkdir(dir, { recursive: true });
    }
    const fifos = ids.flatMap((id) => this.fifoPaths(id));
    await run('mkfifo', ['-m', '600', ...fifos]);
    for (const id of ids) {
      const readers = this.fifoPaths(id).map((path) => {
        // Read and dropped: what the container prints must not fill the FIFO and stall it.
        const reader = fifoReader(path);
        reader.on('error', () => undefined);
        reader.resume();
        return reader;
      });
      this.readers.set(id, readers);
    }
  }

  private layerDirs(id: string): { upper: string; work: string } {
    return { upper: join(this.layers, id, 'fs'), work: join(this.layers, id, 'work') };
  }

  private fifoPaths(id: string): [string, string] {
    return [join(this.fifos, `${id}.stdout`), join(this.fifos, `${id}.stderr`)];
  }

  private async create(id: string): Promise<void> {
    const [stdout, stderr] = this.fifoPaths(id);
    const { upper, work } = this.layerDirs(id);
    this.live.add(id);
    await this.api().create(
      {
        id,
        bundle: join(this.bundles, id),
        rootfs: [
          { type: 'overlay', source: 'overlay', options: ['index=off', `workdir=${work}`, `upperdir=${upper}`, `lowerdir=${this.rootfs}`] },
        ],
        stdin: '',
        stdout,
        stderr,
        terminal: false,
      },
      { timeoutMs: CALL_TIMEOUT_MS },
    );
  }

  private async delete(id: string): Promise<void> {
    await this.api().delete({ id }, { timeoutMs: CALL_TIMEOUT_MS });
    this.live.delete(id);
    for (const reader of this.readers.get(id) ?? []) reader.destroy();
    this.readers.delete(id);
  }

  /** Create + Start of a long-running container. */
  private async startOne(id: string): Promise<Span> {
    const sentAt = performance.now();
    await this.create(id);
    await this.api().start({ id }, { timeoutMs: CALL_TIMEOUT_MS });
    return { sentAt, doneAt: performance.now() };
  }

  private async stopOne(id: string): Promise<void> {
    await this.api().kill({ id, signal: SIGKILL }, { timeoutMs: CALL_TIMEOUT_MS });
    await this.api().wait({ id }, { timeoutMs: CALL_TIMEOUT_MS });
    await this.delete(id);
  }

  /** A short-lived container from Create to Delete; it must exit 0. */
  private async runOne(id: string): Promise<Span> {
    const sentAt = performance.now();
    await this.create(id);
    await this.api().start({ id }, { timeoutMs: CALL_TIMEOUT_MS });
    const { exitStatus } = await this.api().wait({ id }, { timeoutMs: CALL_TIMEOUT_MS });
    await this.delete(id);
    const doneAt = performance.now();
    if (exitStatus !== 0) throw new Error(`exited with status ${exitStatus}`);
    return { sentAt, doneAt };
  }

  private api(): TaskClient {
    if (!this.task) throw new Error('the Task API client is not connected');
    return this.task;
  }

  /**
   * Removes whatever is left, also after a failure or an interruption: containers (killed, waited
   * for briefly, deleted), the connection, the pod, the work directory. Returns the problems met.
   */
  async close(): Promise<string[]> {
    const problems: string[] = [];
    if (this.task) {
      const task = this.task;
      const left = [...this.live];
      const outcomes = await inPool(left, this.options.concurrency, async (id) => {
        await task.kill({ id, signal: SIGKILL }, { timeoutMs: CALL_TIMEOUT_MS }).catch(() => undefined);
        await task.wait({ id }, { timeoutMs: CLEANUP_WAIT_MS }).catch(() => undefined);
        await this.delete(id).catch((err: unknown) => {
          if (!(err instanceof RuntimeError && err.code === Code.NotFound)) throw err;
        });
      });
      outcomes.forEach((o, i) => {
        if (o.status === 'rejected') problems.push(`remove container ${left[i]}: ${(o.reason as Error).message}`);
      });
    }
    this.client?.close();
    for (const readers of this.readers.values()) for (const reader of readers) reader.destroy();
    this.readers.clear();
    if (this.podId !== undefined)
      await removePod(this.options.env, this.podId).catch((err: Error) => problems.push(`remove pod ${this.podId}: ${err.message}`));
    await rm(this.workDir, { recursive: true, force: true }).catch((err: Error) => problems.push(`remove ${this.workDir}: ${err.message}`));
    return problems;
  }
}

function containerIds(prefix: string, count: number): string[] {
  return Array.from({ length: count }, (_, i) => `${prefix}-${i + 1}`);
}

function rateText(run: TaskRateRun): string {
  return run.perSecond === undefined ? `${run.failures.length} failure(s), no rate` : `${run.perSecond.toFixed(0)} containers/s`;
}
