// The results of one benchmark run (written as results.json) and the targets judged
// against them. Everything here is data in, data out: the report and the charts read it.
import type { BenchSettings } from './settings.js';
import type { StageBreakdown } from './stages.js';
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
}

export interface MemoryResult {
  /** kuasard with no pod (kuasar side only). */
  idle?: MemoryPoint;
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
  failures: string[];
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
  memory: Record<string, MemoryResult>;
  targets: TargetResult[];
}

export type TargetStatus = 'met' | 'not met' | 'not measured';

export interface TargetResult {
  title: string;
  goal: string;
  measured: string;
  /** baseline / kuasar for ratios; the figure itself for the marginal cost. */
  value?: number;
  status: TargetStatus;
  /** For a missed target: what dominates. */
  note?: string;
}

/** The kind the targets are set for. */
export const TARGET_KIND = 'runc';
const TARGET_PARALLEL_PODS = 50;
const TARGET_MEMORY_PODS = 50;
const SPEEDUP_GOAL = 2;
const MEMORY_RATIO_GOAL = 8;
const MARGINAL_GOAL_KB = 100;

const fmt = (n: number, digits = 1) => n.toFixed(digits);

export function evaluateTargets(result: Omit<BenchResult, 'targets'>): TargetResult[] {
  const kuasar = result.handlers.find((h) => h.side === 'kuasar' && h.kind === TARGET_KIND)?.handler;
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
      `${TARGET_KIND} kind, one pod at a time, p50`,
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
      `${TARGET_KIND} kind, ${TARGET_PARALLEL_PODS} pods in parallel, wall time (median of rounds)`,
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
      memoryK?.fit ? `kuasard's fixed cost (fit intercept) is ${fmt(memoryK.fit.intercept / 1024)} MiB; its pods add ${fmt((memoryK.fit.slope * TARGET_MEMORY_PODS) / 1024)} MiB at ${TARGET_MEMORY_PODS}` : undefined,
    ),
  );

  // Fitted to private memory after full collections when there are such readings: neither
  // garbage nor the share of the node binary (which moves with other Node.js processes) is a
  // per-pod cost.
  const fit = memoryK?.fitPrivate ?? memoryK?.fit;
  const title = 'marginal management memory per pod (kuasar)';
  const goal = `<= ${MARGINAL_GOAL_KB} KiB/pod`;
  if (!memoryK || !fit) {
    targets.push({ title, goal, measured: '-', status: 'not measured' });
  } else {
    const met = fit.slope <= MARGINAL_GOAL_KB;
    const figures = [
      `${fmt(fit.slope)} KiB/pod${memoryK.fitPrivate ? ' of private memory' : ''} (r² ${fmt(fit.r2, 2)})`,
      ...(memoryK.fitPrivate && memoryK.fit ? [`PSS as found ${fmt(memoryK.fit.slope)} KiB/pod (r² ${fmt(memoryK.fit.r2, 2)})`] : []),
      ...(memoryB?.fit ? [`baseline PSS ${fmt(memoryB.fit.slope)} KiB/pod`] : []),
    ];
    targets.push({
      title,
      goal,
      measured: figures.join('; '),
      value: fit.slope,
      status: met ? 'met' : 'not met',
      ...(met ? {} : { note: `kuasard keeps ${fmt(fit.slope)} KiB more per pod (its JavaScript heap and buffers)` }),
    });
  }
  return targets;
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
