// The results of one benchmark run (written as results.json) and the issue's targets judged
// against them. Everything here is data in, data out: the report and the charts read it.
import { BASELINE_KIND, IN_KUASARD_KIND } from './kinds.js';
import type { PssByMapping } from './memory.js';
import type { BenchSettings } from './settings.js';
import type { StageBreakdown, StageTotal } from './stages.js';
import type { LinearFit, Summary } from './stats.js';

export interface HandlerInfo {
  /** The CRI runtime handler: `kuasar-runc`, or `runc` for containerd's own. */
  handler: string;
  side: 'kuasar' | 'baseline';
  /** The kuasar kind behind the handler. */
  kind?: string;
}

export interface HostInfo {
  cpus: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  containerd: string;
  runc: string;
  /** 1-minute load average when the run began and ended: other work on the machine shows here. */
  loadStart: number;
  loadEnd: number;
}

export interface SingleResult {
  /** End-to-end ms of each start, in the order they ran. */
  ms: number[];
  summary?: Summary;
  /** Of each start, the ms of its RunPodSandbox (the rest is the container's create and start). */
  sandboxMs: number[];
  sandboxSummary?: Summary;
  failures: string[];
}

export interface ParallelRound {
  /** From the first RunPodSandbox sent to the last container seen RUNNING. */
  wallMs: number;
  podMs: number[];
}

export interface ParallelResult {
  pods: number;
  rounds: ParallelRound[];
  wall?: Summary;
  failures: string[];
}

export interface MemoryPoint {
  pods: number;
  /** The management plane's totals (medians of the reads), and how many processes it had. */
  pssKb: number;
  rssKb: number;
  privateKb: number;
  processes: number;
  /** Total PSS of each read, KiB. */
  reads: number[];
  /** Baseline only: the pause processes' total PSS, KiB (not part of the management plane). */
  pausePssKb?: number;
  /** kuasar only: read again after kuasard was made to collect its garbage (see gc-hook.ts). */
  afterGc?: { pssKb: number; privateKb: number; reads: number[] };
  /**
   * Kinds whose pods keep processes of their own (KindBenchmark.podProcesses): those processes'
   * totals (medians of the reads, taken with kuasard's), apart from the management plane's.
   */
  podProcesses?: PodProcessesRead;
}

export interface PodProcessesRead {
  pssKb: number;
  /** The PSS by kind of mapping (memory.ts). */
  pssByMapping: PssByMapping;
  privateKb: number;
  processes: number;
  /** Per-pod cgroups that had a process. */
  pods: number;
}

export interface MemoryResult {
  /** kuasard with no pod (kuasar side only). */
  idle?: MemoryPoint;
  /** kuasar side: how long kuasard's memory took to stop moving before the idle reading, ms. */
  quietMs?: number;
  points: MemoryPoint[];
  /** PSS (KiB, as found) against running pods: the slope is the marginal cost of one pod. */
  fit?: LinearFit;
  /**
   * Private memory against running pods, after full garbage collections where there are such
   * readings: what is really kept per pod, free of garbage and of the share of pages mapped by
   * other processes (see ProcessMemory.privateKb).
   */
  fitPrivate?: LinearFit;
  /** kuasard's children that were not containers, as `pid cmdline`, over all points. */
  helpers: string[];
  /** Kinds whose pods keep processes of their own: what one pod costs the host (pod-memory.ts). */
  podCost?: PodMemoryCost;
  failures: string[];
}

/** KiB per pod: the pod's own processes (averaged over `pods` pods) plus kuasard's slope. */
export interface PodMemoryCost {
  pods: number;
  processesPssKb: number;
  /** processesPssKb by kind of mapping. */
  processesPssByMapping: PssByMapping;
  processesPrivateKb: number;
  /** kuasard's marginal memory per pod: the slope of its private memory (after GC where read), else of its PSS; 0 when not fitted. */
  kuasardKb: number;
  pssKb: number;
  privateKb: number;
}

/** One run of the task-rate part: containers driven through kuasard's Task API, some in flight at once. */
export interface TaskRateRun {
  /** Containers asked for. */
  containers: number;
  /**
   * Epoch ms of the first Create sent and of the last reply that counts (Start for long-running
   * containers, Delete for short-lived ones): the window kuasard's stage records are matched to.
   */
  startedAt?: number;
  endedAt?: number;
  /** endedAt - startedAt, from a monotonic clock. */
  wallMs?: number;
  /** containers / wall time; only when every container succeeded. */
  perSecond?: number;
  /** Each container's own time, ms: Create sent to Start's reply, or to Delete's reply. */
  ms: number[];
  summary?: Summary;
  /** kuasard's stage records of the pod inside the window. */
  stages?: StageTotal[];
  failures: string[];
}

export interface TaskRateResult {
  /** The CRI handler of the pod whose Task API is driven (the handler of the kind whose containers run in kuasard). */
  handler: string;
  /** Why the part did not run. */
  skipped?: string;
  podId?: string;
  /** The pod's Task API socket, as the sandbox controller reported it. */
  taskSocket?: string;
  concurrency: number;
  /** N containers of the long-running command: Create + Start each; stopped and removed afterwards, untimed. */
  longRunning?: TaskRateRun;
  /** M containers of the short-lived command: Create, Start, Wait (exit 0), Delete each. */
  shortLived?: TaskRateRun;
  /** Setting up or removing the pod, the bundles or the containers. */
  failures: string[];
}

/** A VM pod's start, phase by phase (vm-start.ts). */
export interface PhaseRow {
  phase: string;
  stages: string[];
  minus: string[];
  /** Percentiles of the phase's time per start. */
  p50: number;
  p90: number;
  /** The phase's total over the starts' end-to-end total. */
  share: number;
  /** False when no start had a record of the phase's stages (a stage renamed, or not logged at this level). */
  recorded: boolean;
}

export interface PhaseBreakdown {
  starts: number;
  e2e: Summary;
  phases: PhaseRow[];
  /** The end-to-end time that no phase holds: containerd's CRI work, kuasard's other steps, the transport. */
  rest: { p50: number; p90: number; share: number };
}

export interface VmStartResult {
  /** How many VMs of the kind came up with each accelerator during the run, by kuasard's log. */
  accelerators: Record<string, number>;
  /** One pod at a time (every record of the start's window); inside the parallel batches (the records that name the pod's sandbox). */
  single?: PhaseBreakdown;
  parallel?: PhaseBreakdown;
}

export interface BenchResult {
  startedAt: string;
  finishedAt: string;
  /** False when the run was interrupted or failed; what was measured is still here. */
  complete: boolean;
  incomplete?: string;
  host: HostInfo;
  settings: BenchSettings;
  handlers: HandlerInfo[];
  single: Record<string, SingleResult>;
  parallel: Record<string, ParallelResult>;
  /** Per kuasar handler: the stage breakdown of its one-at-a-time and parallel starts. */
  stages: Record<string, { single?: StageBreakdown; parallel?: StageBreakdown }>;
  /** Per handler of a kind whose pods are VMs: its starts phase by phase, and the accelerator. */
  vmStarts?: Record<string, VmStartResult>;
  memory: Record<string, MemoryResult>;
  /** The task-rate part, when it was asked for. */
  taskRate?: TaskRateResult;
  targets: TargetResult[];
}

export type TargetStatus = 'met' | 'not met' | 'not measured';

export interface TargetResult {
  title: string;
  goal: string;
  measured: string;
  /** baseline / kuasar for ratios; the figure itself for the marginal costs and rates. */
  value?: number;
  status: TargetStatus;
  /** For a missed target: what dominates. */
  note?: string;
}

const TARGET_PARALLEL_PODS = 50;
const TARGET_MEMORY_PODS = 50;
const SPEEDUP_GOAL = 2;
const MEMORY_RATIO_GOAL = 8;
const MARGINAL_GOAL_KB = 100;
/** Containers per second above which the kind whose containers run in kuasard matches containerd's runwasi wasmtime shim (its published figure). */
export const TASK_RATE_GOAL = 330;
/** Memory per container running in kuasard: 5 MB (10^6 bytes), in KiB. */
export const CONTAINER_IN_KUASARD_GOAL_KB = (5 * 1_000_000) / 1024;

const fmt = (n: number, digits = 1) => n.toFixed(digits);

export function evaluateTargets(result: Omit<BenchResult, 'targets'>): TargetResult[] {
  const kuasar = result.handlers.find((h) => h.side === 'kuasar' && h.kind === BASELINE_KIND.name)?.handler;
  const baseline = result.handlers.find((h) => h.side === 'baseline')?.handler;
  const get = <T>(table: Record<string, T>, handler: string | undefined) => (handler === undefined ? undefined : table[handler]);
  const dominant = (breakdown: StageBreakdown | undefined) =>
    breakdown?.dominant ? `${breakdown.dominant.stage} (${fmt(breakdown.dominant.share * 100, 0)}%)` : undefined;
  const stages = get(result.stages, kuasar);
  const singleDominant = dominant(stages?.single);
  const parallelDominant = dominant(stages?.parallel);

  const targets: TargetResult[] = [];

  const singleK = get(result.single, kuasar)?.summary;
  const singleB = get(result.single, baseline)?.summary;
  targets.push(
    ratioTarget(
      `${BASELINE_KIND.name} kind, one pod at a time, p50`,
      `>= ${SPEEDUP_GOAL}x faster than the baseline`,
      singleK && singleB ? { kuasar: singleK.p50, baseline: singleB.p50, unit: 'ms' } : undefined,
      SPEEDUP_GOAL,
      singleDominant && `largest share of a pod start: ${singleDominant}`,
    ),
  );

  const parallelK = get(result.parallel, kuasar);
  const parallelB = get(result.parallel, baseline);
  const atTargetSize = (r: ParallelResult | undefined) => (r?.pods === TARGET_PARALLEL_PODS ? r.wall : undefined);
  const wallK = atTargetSize(parallelK);
  const wallB = atTargetSize(parallelB);
  targets.push(
    ratioTarget(
      `${BASELINE_KIND.name} kind, ${TARGET_PARALLEL_PODS} pods in parallel, wall time (median of rounds)`,
      `>= ${SPEEDUP_GOAL}x faster than the baseline`,
      wallK && wallB ? { kuasar: wallK.p50, baseline: wallB.p50, unit: 'ms' } : undefined,
      SPEEDUP_GOAL,
      [
        parallelDominant && `in the batches, largest share among kuasard's stages that name a sandbox: ${parallelDominant}`,
        singleDominant && `one pod at a time: ${singleDominant}`,
      ]
        .filter(Boolean)
        .join('; ') || undefined,
    ),
  );

  const memoryK = get(result.memory, kuasar);
  const memoryB = get(result.memory, baseline);
  const at50K = memoryK?.points.find((p) => p.pods === TARGET_MEMORY_PODS);
  const at50B = memoryB?.points.find((p) => p.pods === TARGET_MEMORY_PODS);
  targets.push(
    ratioTarget(
      `management-plane PSS at ${TARGET_MEMORY_PODS} pods, kuasard vs the baseline's shims`,
      `kuasard <= 1/${MEMORY_RATIO_GOAL} of the shims' sum`,
      at50K && at50B ? { kuasar: at50K.pssKb / 1024, baseline: at50B.pssKb / 1024, unit: 'MiB' } : undefined,
      MEMORY_RATIO_GOAL,
      memoryK?.fit
        ? `kuasard's fixed cost (fit intercept) is ${fmt(memoryK.fit.intercept / 1024)} MiB; its pods add ${fmt((memoryK.fit.slope * TARGET_MEMORY_PODS) / 1024)} MiB at ${TARGET_MEMORY_PODS}`
        : undefined,
    ),
  );

  targets.push(
    marginalTarget(memoryK, {
      title: 'marginal management memory per pod (kuasar)',
      goal: `<= ${MARGINAL_GOAL_KB} KiB/pod`,
      goalKb: MARGINAL_GOAL_KB,
      unit: 'pod',
      extraFigures: memoryB?.fit ? [`baseline PSS ${fmt(memoryB.fit.slope)} KiB/pod`] : [],
      missNote: (slopeKb) => `kuasard keeps ${fmt(slopeKb)} KiB more per pod (its JavaScript heap and buffers)`,
    }),
  );
  targets.push(...inKuasardTargets(result));
  return targets;
}

/** The targets of the kind whose containers run in kuasard (issue 5): containers per second through the Task API, memory per running container. */
function inKuasardTargets(result: Omit<BenchResult, 'targets'>): TargetResult[] {
  const kind = IN_KUASARD_KIND.name;
  const handler = result.handlers.find((h) => h.side === 'kuasar' && h.kind === kind)?.handler;
  const taskRate = result.taskRate?.skipped === undefined ? result.taskRate : undefined;
  const concurrency = taskRate ? `, ${taskRate.concurrency} in flight` : '';
  return [
    rateTarget(
      `${kind} kind, long-running containers started per second through the Task API (Create + Start${concurrency})`,
      taskRate?.longRunning,
    ),
    rateTarget(
      `${kind} kind, short-lived containers per second through the Task API (Create, Start, Wait, Delete${concurrency})`,
      taskRate?.shortLived,
    ),
    // The containers run inside kuasard (see IN_KUASARD_KIND.each), so its marginal memory per pod of one
    // container is what a running container costs, pod bookkeeping included (the garbage its
    // main thread holds at a random moment would swamp a slope of a few MiB: hence after GC).
    marginalTarget(handler === undefined ? undefined : result.memory[handler], {
      title: `memory per running ${kind} container (kuasard's marginal memory, one container per pod)`,
      goal: `<= 5 MB (${fmt(CONTAINER_IN_KUASARD_GOAL_KB, 0)} KiB)`,
      goalKb: CONTAINER_IN_KUASARD_GOAL_KB,
      unit: 'container',
      missNote: (slopeKb) => `each running container adds ${fmt(slopeKb / 1024, 2)} MiB to kuasard (${IN_KUASARD_KIND.memory})`,
    }),
  ];
}

/**
 * A marginal-memory target: the slope of kuasard's memory against running pods. Fitted to private
 * memory (after full collections when there are such readings) where it was read: neither garbage
 * nor the share of the node binary (which moves with other Node.js processes) is a per-pod cost;
 * to PSS as found otherwise.
 */
function marginalTarget(
  memory: MemoryResult | undefined,
  target: { title: string; goal: string; goalKb: number; unit: string; extraFigures?: string[]; missNote: (slopeKb: number) => string },
): TargetResult {
  const { title, goal, unit } = target;
  const fit = memory?.fitPrivate ?? memory?.fit;
  if (!memory || !fit) return { title, goal, measured: '-', status: 'not measured' };
  const met = fit.slope <= target.goalKb;
  const afterGc = memory.points.length > 0 && memory.points.every((p) => p.afterGc);
  const figures = [
    `${fmt(fit.slope)} KiB/${unit} ${memory.fitPrivate ? `of private memory${afterGc ? ' after GC' : ''}` : 'of PSS'} (r² ${fmt(fit.r2, 2)})`,
    ...(memory.fitPrivate && memory.fit ? [`PSS as found ${fmt(memory.fit.slope)} KiB/${unit} (r² ${fmt(memory.fit.r2, 2)})`] : []),
    ...(target.extraFigures ?? []),
  ];
  return {
    title,
    goal,
    measured: figures.join('; '),
    value: fit.slope,
    status: met ? 'met' : 'not met',
    ...(met ? {} : { note: target.missNote(fit.slope) }),
  };
}

function rateTarget(title: string, run: TaskRateRun | undefined): TargetResult {
  const goal = `> ${TASK_RATE_GOAL}/s (containerd's runwasi wasmtime shim)`;
  if (run?.perSecond === undefined || run.wallMs === undefined) {
    const failed = run && run.failures.length > 0 ? { note: `${run.failures.length} failure(s), first: ${run.failures[0]}` } : {};
    return { title, goal, measured: '-', status: 'not measured', ...failed };
  }
  const met = run.perSecond > TASK_RATE_GOAL;
  const perContainer = run.summary ? `; per container p50 ${fmt(run.summary.p50)} ms` : '';
  const note = met ? undefined : dominantStageNote(run);
  return {
    title,
    goal,
    measured: `${fmt(run.perSecond)}/s (${run.containers} containers in ${fmt(run.wallMs, 0)} ms${perContainer})`,
    value: run.perSecond,
    status: met ? 'met' : 'not met',
    ...(note ? { note } : {}),
  };
}

/** For a missed rate: the kuasard stage with the most time per container. */
function dominantStageNote(run: TaskRateRun): string | undefined {
  const top = [...(run.stages ?? [])].sort((a, b) => b.msPerContainer - a.msPerContainer)[0];
  return top ? `most kuasard time per container: ${top.stage} (${fmt(top.msPerContainer)} ms)` : undefined;
}

function ratioTarget(
  title: string,
  goal: string,
  figures: { kuasar: number; baseline: number; unit: string } | undefined,
  goalRatio: number,
  missNote: string | undefined,
): TargetResult {
  if (!figures) return { title, goal, measured: '-', status: 'not measured' };
  const ratio = figures.baseline / figures.kuasar;
  const met = ratio >= goalRatio;
  return {
    title,
    goal,
    measured: `kuasar ${fmt(figures.kuasar)} ${figures.unit}, baseline ${fmt(figures.baseline)} ${figures.unit}: ${fmt(ratio, 2)}x`,
    value: ratio,
    status: met ? 'met' : 'not met',
    ...(met || missNote === undefined ? {} : { note: missNote }),
  };
}
