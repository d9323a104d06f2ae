// One benchmark run: a private containerd + kuasard (the devenv the e2e tests use), kuasar's
// handlers and containerd's own runc handler measured side by side, then the report. The
// task-rate part has no baseline: it drives the Task API of the kind whose containers run inside
// kuasard directly (task-rate.ts; IN_KUASARD_KIND).
//
// Latency phases interleave the handlers (each round runs every handler once, in an order that
// rotates from round to round) so that whatever else the machine does hits both sides alike.
// Memory phases run one handler at a time: all of its pods up, read, all removed, next handler,
// so that one side's processes never sit in the other side's figures. IN_KUASARD_KIND's containers
// live in kuasard itself (MiBs each), and what they leave behind goes back to the system only over
// seconds: each kuasar memory phase first waits for kuasard's memory to stop moving, that kind's
// phase comes last, and the task-rate part (hundreds of containers) after every memory phase.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEnvironment, type Environment } from '../devenv/environment.js';
import { listProcesses } from '../devenv/processes.js';
import {
  findManagementPlane,
  GC_SIGNAL,
  hasGcHook,
  hasSettled,
  readProcessMemory,
  startWithGcHook,
  sumMemory,
  type PlaneLocator,
  type ProcessMemory,
} from './memory.js';
import { IN_KUASARD_KIND } from './kinds.js';
import { writeResults } from './output.js';
import { inPool, removePod, removePods, startTimedPod, type StartedPod } from './pods.js';
import type { BenchProgress } from './progress.js';
import {
  evaluateTargets,
  type BenchResult,
  type HandlerInfo,
  type HostInfo,
  type MemoryPoint,
  type MemoryResult,
  type ParallelResult,
  type SingleResult,
  type TaskRateResult,
} from './results.js';
import type { BenchSettings } from './settings.js';
import { parseStageRecords, recordsOfStart, stageBreakdown, stageTotals, type StageRecord } from './stages.js';
import { measureTaskRate } from './task-rate.js';
import { linearFit, median, summarize } from './stats.js';

/** Pods started or removed at once while filling up for a memory point, or cleaning up. */
const POOL = 8;
/** Time between two memory reads of one point. */
const READ_INTERVAL_MS = 1_000;
/** Full garbage collections asked of kuasard before the after-GC reads, a read interval apart. */
const GC_COLLECTIONS = 3;
/**
 * Before a kuasar handler's memory phase, kuasard's private memory must have moved by less than
 * this from one read to the next (a second apart) this many times in a row; the wait gives up
 * after the timeout (and says so in the results).
 */
const QUIET_STEP_KB = 512;
const QUIET_STEPS = 3;
const QUIET_TIMEOUT_MS = 60_000;
/** kuasard writes its log asynchronously: time for the last records to reach the file. */
const LOG_FLUSH_MS = 500;

export interface BenchOutcome {
  dir: string;
  result: BenchResult;
  /** Set when the environment could not be removed completely. */
  cleanupProblem?: string;
}

interface Measurements {
  single: Record<string, SingleResult>;
  parallel: Record<string, ParallelResult>;
  memory: Record<string, MemoryResult>;
  taskRate?: TaskRateResult;
  /** Every timed start, for matching kuasard's stage records to it. */
  singleStarts: { handler: string; pod: StartedPod }[];
  parallelStarts: { handler: string; pod: StartedPod }[];
}

export async function runBench(settings: BenchSettings, progress: BenchProgress): Promise<BenchOutcome> {
  const startedAt = new Date().toISOString();
  const loadStart = loadavg()[0] ?? 0;
  const interrupt = new AbortController();
  const releaseSignals = handleInterrupts(interrupt, progress);
  const data: Measurements = { single: {}, parallel: {}, memory: {}, singleStarts: [], parallelStarts: [] };
  let handlers: HandlerInfo[] = [];
  let incomplete: string | undefined;
  let cleanupProblem: string | undefined;
  let log = '';
  try {
    const env = await startWithGcHook(() => startEnvironment({ onProgress: (message) => progress.note(`  · ${message}`) }));
    try {
      handlers = chooseHandlers(env.handlers, settings.kinds);
      progress.note(`  · handlers: ${handlers.map((h) => h.handler).join(', ')}`);
      await new Measurer(env, settings, progress, interrupt.signal, handlers, data).run();
    } catch (err) {
      // An interrupted sleep fails with a generic AbortError: name the interruption instead.
      incomplete = ((interrupt.signal.aborted ? interrupt.signal.reason : err) as Error).message;
      progress.fail(incomplete);
    } finally {
      await sleep(LOG_FLUSH_MS);
      log = readText(env.paths.kuasardLog);
      progress.note('  · removing the environment');
      await env.stop().catch((err: Error) => (cleanupProblem = err.message));
    }
  } finally {
    releaseSignals();
  }
  const measuredSomething =
    [data.single, data.parallel, data.memory].some((table) => Object.keys(table).length > 0) ||
    [data.taskRate?.longRunning, data.taskRate?.shortLived].some((run) => (run?.ms.length ?? 0) > 0);
  if (incomplete !== undefined && !measuredSomething) throw new Error(incomplete);
  const records = parseStageRecords(log);
  summarizeMeasurements(data, records);

  const withoutTargets: Omit<BenchResult, 'targets'> = {
    startedAt,
    finishedAt: new Date().toISOString(),
    complete: incomplete === undefined,
    ...(incomplete !== undefined ? { incomplete } : {}),
    host: hostInfo(loadStart),
    settings,
    handlers,
    single: data.single,
    parallel: data.parallel,
    stages: breakdowns(handlers, data, records),
    memory: data.memory,
    ...(data.taskRate ? { taskRate: data.taskRate } : {}),
  };
  const result: BenchResult = { ...withoutTargets, targets: evaluateTargets(withoutTargets) };
  const dir = await writeResults(result, settings.outDir, (line) => progress.note(line));
  return { dir, result, ...(cleanupProblem !== undefined ? { cleanupProblem } : {}) };
}

/** kuasar's handlers for the requested kinds (every kind the environment serves by default), then the baseline. */
export function chooseHandlers(
  handlers: { baseline: string; kuasar: Readonly<Record<string, string>> },
  kinds: readonly string[],
): HandlerInfo[] {
  const served = handlers.kuasar;
  const wanted = kinds.length > 0 ? kinds : Object.keys(served);
  const unknown = wanted.filter((kind) => served[kind] === undefined);
  if (unknown.length > 0)
    throw new Error(`kind(s) ${unknown.join(', ')} not served by this kuasard (it serves: ${Object.keys(served).join(', ') || 'none'})`);
  return [
    ...wanted.map((kind): HandlerInfo => ({ handler: served[kind] as string, side: 'kuasar', kind })),
    { handler: handlers.baseline, side: 'baseline' },
  ];
}

/** The handlers in the order their memory is measured: IN_KUASARD_KIND's last (see the top of this file). */
export function memoryOrder(handlers: readonly HandlerInfo[]): HandlerInfo[] {
  const inKuasard = (h: HandlerInfo) => h.kind === IN_KUASARD_KIND.name;
  return [...handlers.filter((h) => !inKuasard(h)), ...handlers.filter(inKuasard)];
}

/** The handlers in the order of one round: rotated by one place per round. */
export function roundOrder<T>(handlers: readonly T[], round: number): T[] {
  const shift = round % handlers.length;
  return [...handlers.slice(shift), ...handlers.slice(0, shift)];
}

class Measurer {
  private podSeq = 0;
  private readonly locator: PlaneLocator;

  constructor(
    private readonly env: Environment,
    private readonly settings: BenchSettings,
    private readonly progress: BenchProgress,
    private readonly signal: AbortSignal,
    private readonly handlers: readonly HandlerInfo[],
    private readonly data: Measurements,
  ) {
    this.locator = {
      kuasardConfig: env.paths.kuasardConfig,
      containerdSocket: env.paths.containerdSocket,
      cgroupName: env.names.cgroupName,
    };
  }

  async run(): Promise<void> {
    const parts = this.settings.parts;
    if (parts.includes('single') || parts.includes('parallel')) await this.warmUp();
    if (parts.includes('single')) await this.single();
    if (parts.includes('parallel')) await this.parallel();
    if (parts.includes('memory')) await this.memory();
    if (parts.includes('task-rate')) await this.taskRate();
  }

  private checkpoint(): void {
    this.signal.throwIfAborted();
  }

  private start(handler: HandlerInfo): Promise<StartedPod> {
    this.podSeq += 1;
    return startTimedPod(this.env, {
      handler: handler.handler,
      ...(handler.kind ? { kind: handler.kind } : {}),
      name: `bench-${this.podSeq}`,
      hostNetwork: this.settings.hostNetwork,
    });
  }

  /** One untimed pod per handler: the first start of each pays for caches the others reuse. */
  private async warmUp(): Promise<void> {
    this.progress.begin('warm-up', this.handlers.length);
    for (const handler of this.handlers) {
      this.checkpoint();
      const pod = await this.start(handler);
      await removePod(this.env, pod.podId);
      this.progress.tick(handler.handler);
    }
    this.progress.end();
  }

  private async single(): Promise<void> {
    const { singleRounds } = this.settings;
    this.progress.begin('one pod at a time', singleRounds * this.handlers.length);
    for (const h of this.handlers) this.data.single[h.handler] = { ms: [], failures: [] };
    for (let round = 0; round < singleRounds; round++) {
      for (const handler of roundOrder(this.handlers, round)) {
        this.checkpoint();
        const entry = this.data.single[handler.handler] as SingleResult;
        let pod: StartedPod;
        try {
          pod = await this.start(handler);
        } catch (err) {
          entry.failures.push(`round ${round + 1}: ${(err as Error).message}`);
          this.progress.tick(`${handler.handler} failed`);
          continue;
        }
        entry.ms.push(pod.ms);
        this.data.singleStarts.push({ handler: handler.handler, pod });
        this.progress.tick(`${handler.handler} ${pod.ms.toFixed(0)} ms`);
        await removePod(this.env, pod.podId).catch((err: Error) => entry.failures.push(`round ${round + 1}, removal: ${err.message}`));
      }
    }
    this.progress.end(this.handlers.map((h) => `${h.handler} p50 ${fmtMedian(this.data.single[h.handler]?.ms)}`).join(', '));
  }

  private async parallel(): Promise<void> {
    const { parallelPods, parallelRounds } = this.settings;
    this.progress.begin(`${parallelPods} pods in parallel`, parallelRounds * this.handlers.length);
    for (const h of this.handlers) this.data.parallel[h.handler] = { pods: parallelPods, rounds: [], failures: [] };
    for (let round = 0; round < parallelRounds; round++) {
      for (const handler of roundOrder(this.handlers, round)) {
        this.checkpoint();
        const entry = this.data.parallel[handler.handler] as ParallelResult;
        const outcomes = await Promise.allSettled(Array.from({ length: parallelPods }, () => this.start(handler)));
        const pods = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
        const failed = outcomes.flatMap((o) => (o.status === 'rejected' ? [(o.reason as Error).message] : []));
        entry.failures.push(
          ...(await removePods(
            this.env,
            pods.map((p) => p.podId),
            POOL,
          )),
        );
        if (failed.length > 0) {
          // A batch with a failed pod has no meaningful wall time: it is left out.
          entry.failures.push(`round ${round + 1}: ${failed.length} of ${parallelPods} pods failed, first: ${failed[0]}`);
          this.progress.tick(`${handler.handler} failed`);
          continue;
        }
        const wallMs = Math.max(...pods.map((p) => p.endedAt)) - Math.min(...pods.map((p) => p.startedAt));
        entry.rounds.push({ wallMs, podMs: pods.map((p) => p.ms) });
        this.data.parallelStarts.push(...pods.map((pod) => ({ handler: handler.handler, pod })));
        this.progress.tick(`${handler.handler} ${wallMs.toFixed(0)} ms`);
      }
    }
    this.progress.end(
      this.handlers.map((h) => `${h.handler} wall p50 ${fmtMedian(this.data.parallel[h.handler]?.rounds.map((r) => r.wallMs))}`).join(', '),
    );
  }

  /** IN_KUASARD_KIND's containers per second through its Task API (no baseline: containerd has no such handler). */
  private async taskRate(): Promise<void> {
    const measured = this.handlers.find((h) => h.side === 'kuasar' && h.kind === IN_KUASARD_KIND.name);
    const { taskConcurrency, taskLongRunning, taskShortLived, hostNetwork } = this.settings;
    if (!measured) {
      const skipped = `the ${IN_KUASARD_KIND.name} kind is not measured in this run`;
      this.data.taskRate = { handler: '', skipped, concurrency: taskConcurrency, failures: [] };
      this.progress.note(`  · task-rate skipped: ${skipped}`);
      return;
    }
    const entry: TaskRateResult = { handler: measured.handler, concurrency: taskConcurrency, failures: [] };
    this.data.taskRate = entry;
    await this.removeEveryPod();
    try {
      await measureTaskRate(
        {
          env: this.env,
          handler: measured.handler,
          kind: IN_KUASARD_KIND.name,
          workloads: IN_KUASARD_KIND.taskRate,
          hostNetwork,
          longRunning: taskLongRunning,
          shortLived: taskShortLived,
          concurrency: taskConcurrency,
          progress: this.progress,
          signal: this.signal,
        },
        entry,
      );
    } catch (err) {
      // An interruption ends the run; any other failure ends only this part.
      if (this.signal.aborted) throw err;
      entry.failures.push((err as Error).message);
      this.progress.fail((err as Error).message);
    }
  }

  private async memory(): Promise<void> {
    for (const handler of memoryOrder(this.handlers)) {
      await this.removeEveryPod();
      const entry: MemoryResult = { points: [], helpers: [], failures: [] };
      this.data.memory[handler.handler] = entry;
      const counts = this.settings.memoryPods;
      this.progress.begin(`memory, ${handler.handler}`, counts[counts.length - 1] ?? 0);
      if (handler.side === 'kuasar') {
        await this.waitForQuietKuasard(entry);
        entry.idle = await this.readPoint(handler, 0, entry);
      }
      const running: string[] = [];
      try {
        for (const count of counts) {
          this.checkpoint();
          const outcomes = await inPool(
            Array.from({ length: Math.max(0, count - running.length) }),
            POOL,
            async () => {
              const pod = await this.start(handler);
              this.progress.tick();
              return pod;
            },
            this.signal,
          );
          for (const outcome of outcomes) {
            if (outcome.status === 'fulfilled') running.push(outcome.value.podId);
            else if (!this.signal.aborted) entry.failures.push(`filling up to ${count} pods: ${(outcome.reason as Error).message}`);
          }
          this.checkpoint();
          await sleep(this.settings.settleMs, undefined, { signal: this.signal });
          entry.points.push(await this.readPoint(handler, running.length, entry));
        }
      } finally {
        this.progress.note(`  · removing ${running.length} ${handler.handler} pods`);
        entry.failures.push(...(await removePods(this.env, running, POOL)));
      }
      const last = entry.points[entry.points.length - 1];
      this.progress.end(last ? `${(last.pssKb / 1024).toFixed(1)} MiB at ${last.pods} pods` : '');
    }
  }

  /**
   * Waits until kuasard's private memory stops moving, read a second apart after a collection
   * (when it has the GC hook). What earlier phases left behind must not count as this handler's:
   * containers that ran inside kuasard above all, MiBs each, whose memory goes back to the system over seconds after
   * they end (with only the settle time, a runc line fell by 250 KiB per pod).
   */
  private async waitForQuietKuasard(entry: MemoryResult): Promise<void> {
    const began = Date.now();
    const series: number[] = [];
    while (!hasSettled(series, QUIET_STEP_KB, QUIET_STEPS)) {
      if (Date.now() - began > QUIET_TIMEOUT_MS) {
        const last = series.slice(-QUIET_STEPS - 1).map((kb) => (kb / 1024).toFixed(1));
        entry.failures.push(`kuasard's memory was still moving after ${QUIET_TIMEOUT_MS / 1000} s (private, MiB: ${last.join(', ')})`);
        break;
      }
      const kuasard = findManagementPlane(listProcesses(), this.locator).kuasard;
      if (!kuasard) throw new Error('kuasard is not running');
      if (hasGcHook(kuasard.pid)) process.kill(kuasard.pid, GC_SIGNAL);
      await sleep(READ_INTERVAL_MS, undefined, { signal: this.signal });
      series.push(readProcessMemory(kuasard.pid)?.privateKb ?? 0);
    }
    entry.quietMs = Date.now() - began;
  }

  /**
   * Reads the handler's management plane a few times, a second apart (the point is their
   * median). For kuasard started with the GC hook: then makes it collect its garbage a few
   * times and reads again.
   */
  private async readPoint(handler: HandlerInfo, pods: number, entry: MemoryResult): Promise<MemoryPoint> {
    const reads = await this.readSeries(handler, entry);
    const last = reads[reads.length - 1];
    const point: MemoryPoint = {
      pods,
      pssKb: median(reads.map((r) => r.pssKb)),
      rssKb: median(reads.map((r) => r.rssKb)),
      privateKb: median(reads.map((r) => r.privateKb)),
      processes: last?.processes ?? 0,
      reads: reads.map((r) => r.pssKb),
      ...(handler.side === 'baseline' ? { pausePssKb: median(reads.map((r) => r.pausePssKb)) } : {}),
    };
    const kuasard = handler.side === 'kuasar' ? findManagementPlane(listProcesses(), this.locator).kuasard : undefined;
    if (kuasard && hasGcHook(kuasard.pid)) {
      // One collection frees the garbage; V8 gives the pages back over the next few.
      for (let i = 0; i < GC_COLLECTIONS; i++) {
        process.kill(kuasard.pid, GC_SIGNAL);
        await sleep(READ_INTERVAL_MS, undefined, { signal: this.signal });
      }
      const afterGc = await this.readSeries(handler, entry);
      point.afterGc = {
        pssKb: median(afterGc.map((r) => r.pssKb)),
        privateKb: median(afterGc.map((r) => r.privateKb)),
        reads: afterGc.map((r) => r.pssKb),
      };
    }
    return point;
  }

  private async readSeries(handler: HandlerInfo, entry: MemoryResult) {
    const reads: (ProcessMemory & { processes: number; pausePssKb: number })[] = [];
    for (let i = 0; i < this.settings.memoryReads; i++) {
      if (i > 0) await sleep(READ_INTERVAL_MS, undefined, { signal: this.signal });
      const plane = findManagementPlane(listProcesses(), this.locator);
      let pids: number[];
      if (handler.side === 'kuasar') {
        if (!plane.kuasard) throw new Error('kuasard is not running');
        for (const helper of plane.kuasardHelpers) {
          const line = `${helper.pid} ${helper.cmdline}`;
          if (!entry.helpers.includes(line)) entry.helpers.push(line);
        }
        pids = [plane.kuasard.pid, ...plane.kuasardHelpers.map((p) => p.pid)];
      } else {
        pids = plane.shims.map((p) => p.pid);
      }
      reads.push({ ...sumMemory(pids), pausePssKb: sumMemory(plane.pauses.map((p) => p.pid)).pssKb });
    }
    return reads;
  }

  /** Leaves no pod running: a pod a failed removal left behind would count in the next figures. */
  private async removeEveryPod(): Promise<void> {
    const { items } = await this.env.cri.runtime.listPodSandbox({});
    const problems = await removePods(
      this.env,
      items.map((pod) => pod.id),
      POOL,
    );
    if (problems.length > 0) throw new Error(`pods left from earlier phases could not be removed: ${problems.join('; ')}`);
  }
}

/** Stage breakdowns of each kuasar handler's timed starts. */
function breakdowns(handlers: readonly HandlerInfo[], data: Measurements, records: readonly StageRecord[]): BenchResult['stages'] {
  const stages: BenchResult['stages'] = {};
  for (const h of handlers.filter((handler) => handler.side === 'kuasar')) {
    // One pod at a time, kuasard does nothing else: records without a sandbox id are this pod's.
    const single = stageBreakdown(
      data.singleStarts
        .filter((s) => s.handler === h.handler)
        .map(({ pod }) => ({ ms: pod.ms, records: recordsOfStart(records, windowOf(pod), { includeUnnamed: true }) })),
      { everyRpc: true },
    );
    const parallel = stageBreakdown(
      data.parallelStarts
        .filter((s) => s.handler === h.handler)
        .map(({ pod }) => ({ ms: pod.ms, records: recordsOfStart(records, windowOf(pod), { includeUnnamed: false }) })),
      { everyRpc: false },
    );
    if (single || parallel) stages[h.handler] = { ...(single ? { single } : {}), ...(parallel ? { parallel } : {}) };
  }
  return stages;
}

function windowOf(pod: StartedPod) {
  return { sandbox: pod.podId, startedAt: pod.startedAt, endedAt: pod.endedAt };
}

/**
 * First Ctrl-C (or SIGTERM): stop after the step in flight, then clean up and write what was
 * measured. Second: quit at once (the next run of anything using the devenv removes what is left).
 */
function handleInterrupts(interrupt: AbortController, progress: BenchProgress): () => void {
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupt.signal.aborted) {
      progress.note(`${signal} again: quitting without cleaning up; the next benchmark or test run removes the environment`);
      process.exit(130);
    }
    progress.note(`${signal}: finishing the step in flight, then removing every pod and the environment (again to quit at once)`);
    interrupt.abort(new Error(`interrupted by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}

function hostInfo(loadStart: number): HostInfo {
  return {
    cpus: cpus().length,
    memoryGiB: totalmem() / 2 ** 30,
    kernel: release(),
    node: process.versions.node,
    containerd: firstLine('containerd', ['--version']),
    runc: firstLine('runc', ['--version']),
    loadStart,
    loadEnd: loadavg()[0] ?? 0,
  };
}

function firstLine(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', timeout: 5_000 }).split('\n')[0]?.trim() ?? command;
  } catch {
    return `${command} (version unknown)`;
  }
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function fmtMedian(values: readonly number[] | undefined): string {
  return values && values.length > 0 ? `${median(values).toFixed(0)} ms` : '-';
}

/** Summaries and fits of whatever was measured, also when the run stopped halfway. */
function summarizeMeasurements(data: Measurements, records: readonly StageRecord[]): void {
  const podId = data.taskRate?.podId;
  for (const run of [data.taskRate?.longRunning, data.taskRate?.shortLived]) {
    if (!run || podId === undefined || run.startedAt === undefined || run.endedAt === undefined) continue;
    run.stages = stageTotals(records, { sandbox: podId, startedAt: run.startedAt, endedAt: run.endedAt }, run.containers);
  }
  for (const entry of Object.values(data.single)) {
    if (entry.ms.length > 0) entry.summary = summarize(entry.ms);
  }
  for (const entry of Object.values(data.parallel)) {
    if (entry.rounds.length > 0) entry.wall = summarize(entry.rounds.map((r) => r.wallMs));
  }
  for (const entry of Object.values(data.memory)) {
    if (new Set(entry.points.map((p) => p.pods)).size < 2) continue;
    entry.fit = linearFit(entry.points.map((p) => ({ x: p.pods, y: p.pssKb })));
    const afterGc = entry.points.every((p) => p.afterGc !== undefined);
    entry.fitPrivate = linearFit(entry.points.map((p) => ({ x: p.pods, y: afterGc && p.afterGc ? p.afterGc.privateKb : p.privateKb })));
  }
}
