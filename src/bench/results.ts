// The results of one benchmark run (written as results.json) and the issue's targets judged
// against them. Everything here is data in, data out: the report and the charts read it.
import { BASELINE_KIND, IN_KUASARD_KIND } from './kinds.js';
import type { PssByMapping } from './memory.js';
import type { BenchSettings } from './settings.js';
import type { StageBreakdown, StageTotal } from './stages.js';
import type { LinearFit, Summary } from './stats.js';

export interface HandlerInfo {
  /**
   * The series' name in the results: the CRI runtime handler (`kuasar-runc`, or `runc` for
   * containerd's own), or for a kind with a warm pool `<handler> warm` and `<handler> cold`.
   */
  handler: string;
  /** The CRI runtime handler its pods run with, when it is not `handler`. */
  runtimeHandler?: string;
  side: 'kuasar' | 'baseline';
  /** The kuasar kind behind the handler. */
  kind?: string;
  /**
   * For a kind with a warm pool (KindBenchmark.warmPool), which of its pods this series starts:
   * pods the pool serves, or pods it cannot serve (they boot cold).
   */
  pool?: 'warm' | 'cold';
}

/** The CRI runtime handler of a series. */
export const runtimeHandlerOf = (h: HandlerInfo): string => h.runtimeHandler ?? h.handler;

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
  /** With a warm pool in the run: its idle members' processes (warm-pool.ts), apart from the pods' (medians of the reads). */
  idlePool?: IdlePoolRead;
}

/** The CPU time of a warm pool's idle members over a window (their threads' time on a CPU). */
export interface IdlePoolCpu {
  members: number;
  windowMs: number;
  /** Per idle member: its CPU time over the window, in percent of one CPU. */
  percentPerMember: number;
}

/** The processes of a warm pool's idle members, summed. */
export interface IdlePoolRead {
  /** Idle members (one process each). */
  members: number;
  pssKb: number;
  rssKb: number;
  privateKb: number;
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
  /** For a kind with a warm pool, at the idle point: the CPU its idle members used over a window. */
  idlePoolCpu?: IdlePoolCpu;
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
const WARM_SPEEDUP_GOAL = 5;
const WARM_SANDBOX_GOAL = 2;
/** kuasard's stage record of Controller Start, the RPC in which a pod's VM comes up. */
const CONTROLLER_START = 'controller.start';
const TARGET_MEMORY_PODS = 50;
/** Issue 16 also asks for the PSS ratio at this many pods, judged against the same goal. */
const TARGET_MEMORY_PODS_MORE = 100;
const SPEEDUP_GOAL = 2;
const MEMORY_RATIO_GOAL = 8;
/** Issue 16: kuasard's extra memory per runc pod, private after GC (issue 4 asked for 100). */
const MARGINAL_GOAL_KB = 50;
/** Issue 16: kuasard with every kind enabled and no pod, private memory after GC: 16 MiB. */
const IDLE_PRIVATE_GOAL_KB = 16 * 1024;
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
  for (const pods of [TARGET_MEMORY_PODS, TARGET_MEMORY_PODS_MORE]) {
    const pointK = memoryK?.points.find((p) => p.pods === pods);
    const pointB = memoryB?.points.find((p) => p.pods === pods);
    targets.push(
      ratioTarget(
        `management-plane PSS at ${pods} pods, kuasard vs the baseline's shims`,
        `kuasard <= 1/${MEMORY_RATIO_GOAL} of the shims' sum`,
        pointK && pointB ? { kuasar: pointK.pssKb / 1024, baseline: pointB.pssKb / 1024, unit: 'MiB' } : undefined,
        MEMORY_RATIO_GOAL,
        memoryK?.fit
          ? `kuasard's fixed cost (fit intercept) is ${fmt(memoryK.fit.intercept / 1024)} MiB; its pods add ${fmt((memoryK.fit.slope * pods) / 1024)} MiB at ${pods}`
          : undefined,
      ),
    );
  }
  targets.push(idleTarget(memoryK));

  targets.push(
    marginalTarget(memoryK, {
      title: `extra memory per ${BASELINE_KIND.name} pod (kuasard's marginal memory)`,
      goal: `<= ${MARGINAL_GOAL_KB} KiB/pod`,
      goalKb: MARGINAL_GOAL_KB,
      unit: 'pod',
      extraFigures: memoryB?.fit ? [`baseline PSS ${fmt(memoryB.fit.slope)} KiB/pod`] : [],
      missNote: (slopeKb) => `kuasard keeps ${fmt(slopeKb)} KiB more per pod (its JavaScript heap and buffers)`,
    }),
  );
  targets.push(...inKuasardTargets(result));
  targets.push(...warmPoolTargets(result));
  return targets;
}

/**
 * The targets of a kind with a warm pool (issue 14), one pod at a time: a warm start at least
 * WARM_SPEEDUP_GOAL times faster than a cold one (p50), and its RunPodSandbox at most
 * WARM_SANDBOX_GOAL times the BASELINE_KIND's (p50).
 */
function warmPoolTargets(result: Omit<BenchResult, 'targets'>): TargetResult[] {
  const reference = result.handlers.find((h) => h.side === 'kuasar' && h.kind === BASELINE_KIND.name);
  return result.handlers
    .filter((h) => h.pool === 'warm')
    .flatMap((warm) => {
      const cold = result.handlers.find((h) => h.pool === 'cold' && h.kind === warm.kind);
      const warmSingle = result.single[warm.handler];
      const coldSingle = cold && result.single[cold.handler];
      const phases = result.vmStarts?.[warm.handler]?.single;
      const largestPhase = phases && [...phases.phases].sort((a, b) => b.p50 - a.p50)[0];
      const speed = ratioTarget(
        `${warm.kind} kind, one pod at a time, p50: a warm VM pod (its VM from the pool) against a cold one (its VM booted for it)`,
        `warm >= ${WARM_SPEEDUP_GOAL}x faster than cold`,
        warmSingle?.summary && coldSingle?.summary
          ? { kuasar: warmSingle.summary.p50, baseline: coldSingle.summary.p50, unit: 'ms', names: { kuasar: 'warm', baseline: 'cold' } }
          : undefined,
        WARM_SPEEDUP_GOAL,
        largestPhase && `largest phase of a warm start: ${largestPhase.phase} (p50 ${fmt(largestPhase.p50)} ms)`,
      );
      const title = `${warm.kind} kind, one pod at a time, RunPodSandbox p50: a warm VM pod against the ${BASELINE_KIND.name} kind`;
      const goal = `<= ${WARM_SANDBOX_GOAL}x the ${BASELINE_KIND.name} kind's`;
      const warmSandbox = warmSingle?.sandboxSummary?.p50;
      const referenceSandbox = reference && result.single[reference.handler]?.sandboxSummary?.p50;
      if (warmSandbox === undefined || referenceSandbox === undefined)
        return [speed, { title, goal, measured: '-', status: 'not measured' }];
      const times = warmSandbox / referenceSandbox;
      const met = times <= WARM_SANDBOX_GOAL;
      const note = met ? undefined : sandboxNote(result.stages[warm.handler]?.single);
      const sandbox: TargetResult = {
        title,
        goal,
        measured: `warm ${fmt(warmSandbox)} ms, ${BASELINE_KIND.name} kind ${fmt(referenceSandbox)} ms: ${fmt(times, 2)}x`,
        value: times,
        status: met ? 'met' : 'not met',
        ...(note ? { note } : {}),
      };
      return [speed, sandbox];
    });
}

/** For a missed RunPodSandbox target: kuasard's Controller Start and the largest step inside it. */
function sandboxNote(breakdown: StageBreakdown | undefined): string | undefined {
  const start = breakdown?.rows.find((r) => r.rpc && r.stage === CONTROLLER_START);
  if (!breakdown || !start) return undefined;
  const steps = breakdown.rows.filter((r) => !r.rpc && r.within === CONTROLLER_START && r.inside === undefined);
  const largest = [...steps].sort((a, b) => b.p50 - a.p50)[0];
  return (
    `kuasard's ${CONTROLLER_START} takes p50 ${fmt(start.p50)} ms of it` +
    (largest ? `, most of it in ${largest.stage} (p50 ${fmt(largest.p50)} ms)` : '')
  );
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
    `${fmt(fit.slope)} KiB/${unit} ${memory.fitPrivate ? `of private memory${afterGc ? ' after GC' : ''}` : 'of PSS'} (r² ${fmt(fit.r2, 2)}): ${timesTheGoal(fit.slope, target.goalKb)}`,
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

/**
 * kuasard's fixed memory: with every kind its checks allow enabled (the benchmark's kuasard, as a
 * node runs it) and no pod, private memory after its collections, read by the memory part of the
 * baseline kind's handler before its first pod.
 */
function idleTarget(memory: MemoryResult | undefined): TargetResult {
  const title = 'kuasard with every kind enabled and no pod: private memory after GC';
  const goal = `<= ${fmt(IDLE_PRIVATE_GOAL_KB / 1024, 0)} MiB`;
  const afterGc = memory?.idle?.afterGc;
  if (!afterGc) return { title, goal, measured: '-', status: 'not measured' };
  const met = afterGc.privateKb <= IDLE_PRIVATE_GOAL_KB;
  return {
    title,
    goal,
    measured: `${fmt(afterGc.privateKb / 1024)} MiB (${fmt(afterGc.pssKb / 1024)} MiB PSS): ${timesTheGoal(afterGc.privateKb, IDLE_PRIVATE_GOAL_KB)}`,
    value: afterGc.privateKb,
    status: met ? 'met' : 'not met',
    ...(met
      ? {}
      : {
          note: "read after the run's earlier parts: what that work left (the wasm kind's worker threads until 30 s without an instance among it); README.md, \"kuasard's fixed memory\", measures a fresh kuasard and each dependency's share",
        }),
  };
}

/** A figure against an upper bound, as the summary says it: `1.98x the goal`. */
function timesTheGoal(value: number, goal: number): string {
  return `${fmt(value / goal, 2)}x the goal`;
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
    measured: `${fmt(run.perSecond)}/s (${run.containers} containers in ${fmt(run.wallMs, 0)} ms${perContainer}): ${fmt(run.perSecond / TASK_RATE_GOAL, 2)}x the goal`,
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
  figures: { kuasar: number; baseline: number; unit: string; names?: { kuasar: string; baseline: string } } | undefined,
  goalRatio: number,
  missNote: string | undefined,
): TargetResult {
  if (!figures) return { title, goal, measured: '-', status: 'not measured' };
  const ratio = figures.baseline / figures.kuasar;
  const met = ratio >= goalRatio;
  const names = figures.names ?? { kuasar: 'kuasar', baseline: 'baseline' };
  return {
    title,
    goal,
    measured: `${names.kuasar} ${fmt(figures.kuasar)} ${figures.unit}, ${names.baseline} ${fmt(figures.baseline)} ${figures.unit}: ${fmt(ratio, 2)}x`,
    value: ratio,
    status: met ? 'met' : 'not met',
    ...(met || missNote === undefined ? {} : { note: missNote }),
  };
}
