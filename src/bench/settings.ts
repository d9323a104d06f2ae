// What one benchmark run does: the command-line options resolved against the defaults of a
// full run (the figures the issue asks for) or of a quick smoke run (`--quick`). A kind whose
// registration caps the counts (pods that take seconds to start, or hold hundreds of MiB) gets
// the smaller of its caps and those defaults, unless the option was given.
import { findKind, KINDS } from '../kinds/index.js';
import type { KindRunLimits } from '../kind-api/registration.js';

/**
 * In the order they run: memory after the pod starts (a daemon that has served work), and the
 * Task API rate last (its hundreds of containers run inside kuasard and would leave memory behind there).
 */
export const PARTS = ['single', 'parallel', 'memory', 'task-rate'] as const;
export type Part = (typeof PARTS)[number];

export interface BenchSettings {
  /** kuasar kinds to measure; empty means every kind kuasard serves. */
  kinds: string[];
  parts: Part[];
  /** One-pod-at-a-time starts per handler. */
  singleRounds: number;
  /** Pods started at once in a parallel batch, and how many batches per handler. */
  parallelPods: number;
  parallelRounds: number;
  /** Running-pod counts at which memory is read, ascending. */
  memoryPods: number[];
  /** Wait after the last pod started before memory is read, ms. */
  settleMs: number;
  /** Memory reads per point (one a second); the point is their median. */
  memoryReads: number;
  /** Containers of the kind that runs them inside kuasard (bench/kinds.ts), started through the Task API: long-running ones (create + start), short-lived ones (create, start, wait, delete). */
  taskLongRunning: number;
  taskShortLived: number;
  /** Task API containers in flight at once. */
  taskConcurrency: number;
  /** Pods on the host network (no CNI) instead of the CNI bridge. */
  hostNetwork: boolean;
  /** The counts of the kinds whose registration caps them (KindRunLimits), with why; every other handler runs the counts above. */
  kindCounts: Record<string, HandlerCounts & { why: string }>;
  /** Directory that gets `<timestamp>/` and `latest/`. */
  outDir: string;
  quick: boolean;
}

/** The counts that can differ from one handler to another. */
export interface HandlerCounts {
  singleRounds: number;
  parallelPods: number;
  parallelRounds: number;
  memoryPods: number[];
}

/** Options as commander hands them over: strings, unset when not given. */
export interface BenchOptions {
  kinds?: string;
  parts?: string;
  rounds?: string;
  parallelPods?: string;
  parallelRounds?: string;
  memoryPods?: string;
  settle?: string;
  reads?: string;
  taskLong?: string;
  taskShort?: string;
  taskConcurrency?: string;
  hostNetwork?: boolean;
  out?: string;
  quick?: boolean;
}

export const FULL_DEFAULTS = {
  singleRounds: 50,
  parallelPods: 50,
  parallelRounds: 5,
  memoryPods: [1, 5, 10, 20, 30, 50, 100],
  settleMs: 5_000,
  memoryReads: 3,
  // 200 containers made a window of about a second, in which another process's burst on a
  // 2-core machine moved the rate by a third from one run to the next; 1000 take 4-10 s.
  taskLongRunning: 1000,
  taskShortLived: 1000,
  taskConcurrency: 8,
} as const;

export const QUICK_DEFAULTS = {
  singleRounds: 5,
  parallelPods: 10,
  parallelRounds: 2,
  memoryPods: [1, 5, 10],
  settleMs: 1_000,
  memoryReads: 2,
  taskLongRunning: 30,
  taskShortLived: 30,
  taskConcurrency: 8,
} as const;

/**
 * Explicit options win; `quick` only changes the defaults, and a kind's run limits cap them (for
 * the kinds asked for, or by default those a default run measures). Throws on a malformed value.
 */
export function resolveSettings(
  options: BenchOptions,
  defaultOutDir: string,
  limitsOf: (kind: string) => KindRunLimits | undefined = (kind) => findKind(kind)?.bench?.runLimits,
): BenchSettings {
  const quick = options.quick ?? false;
  const defaults = quick ? QUICK_DEFAULTS : FULL_DEFAULTS;
  const parts = options.parts === undefined ? [...PARTS] : list(options.parts, '--parts');
  for (const part of parts) {
    if (!(PARTS as readonly string[]).includes(part)) throw new Error(`--parts: unknown part "${part}" (known: ${PARTS.join(', ')})`);
  }
  const memoryPods =
    options.memoryPods === undefined
      ? [...defaults.memoryPods]
      : list(options.memoryPods, '--memory-pods').map((v) => count(v, '--memory-pods'));
  const counts: HandlerCounts = {
    singleRounds: options.rounds === undefined ? defaults.singleRounds : count(options.rounds, '--rounds'),
    parallelPods: options.parallelPods === undefined ? defaults.parallelPods : count(options.parallelPods, '--parallel-pods'),
    parallelRounds: options.parallelRounds === undefined ? defaults.parallelRounds : count(options.parallelRounds, '--parallel-rounds'),
    memoryPods: [...new Set(memoryPods)].sort((a, b) => a - b),
  };
  const kinds = options.kinds === undefined ? [] : list(options.kinds, '--kinds');
  const limitedKinds = kinds.length > 0 ? kinds : KINDS.filter((kind) => !kind.bench?.onlyWhenAsked).map((kind) => kind.name);
  const kindCounts: BenchSettings['kindCounts'] = {};
  for (const kind of limitedKinds) {
    const limits = limitsOf(kind);
    if (limits) kindCounts[kind] = { ...capped(counts, limits, options), why: limits.why };
  }
  return {
    kinds,
    parts: PARTS.filter((part) => parts.includes(part)),
    ...counts,
    settleMs: options.settle === undefined ? defaults.settleMs : count(options.settle, '--settle', 0),
    memoryReads: options.reads === undefined ? defaults.memoryReads : count(options.reads, '--reads'),
    taskLongRunning: options.taskLong === undefined ? defaults.taskLongRunning : count(options.taskLong, '--task-long'),
    taskShortLived: options.taskShort === undefined ? defaults.taskShortLived : count(options.taskShort, '--task-short'),
    taskConcurrency:
      options.taskConcurrency === undefined ? defaults.taskConcurrency : count(options.taskConcurrency, '--task-concurrency'),
    hostNetwork: options.hostNetwork ?? false,
    kindCounts,
    outDir: options.out ?? defaultOutDir,
    quick,
  };
}

/** A kind's counts: each default capped by its limit, each option given as it is. */
function capped(counts: HandlerCounts, limits: KindRunLimits, options: BenchOptions): HandlerCounts {
  return {
    singleRounds: options.rounds === undefined ? Math.min(counts.singleRounds, limits.singleRounds) : counts.singleRounds,
    parallelPods: options.parallelPods === undefined ? Math.min(counts.parallelPods, limits.parallelPods) : counts.parallelPods,
    parallelRounds: options.parallelRounds === undefined ? Math.min(counts.parallelRounds, limits.parallelRounds) : counts.parallelRounds,
    memoryPods: options.memoryPods === undefined ? counts.memoryPods.filter((pods) => pods <= limits.memoryPods) : counts.memoryPods,
  };
}

/** The counts of one handler: its kind's when its registration caps them, else the run's. */
export function countsFor(settings: BenchSettings, kind: string | undefined): HandlerCounts {
  const own = kind === undefined ? undefined : settings.kindCounts[kind];
  if (own)
    return {
      singleRounds: own.singleRounds,
      parallelPods: own.parallelPods,
      parallelRounds: own.parallelRounds,
      memoryPods: own.memoryPods,
    };
  const { singleRounds, parallelPods, parallelRounds, memoryPods } = settings;
  return { singleRounds, parallelPods, parallelRounds, memoryPods };
}

function list(value: string, option: string): string[] {
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (items.length === 0) throw new Error(`${option}: give a comma-separated list`);
  return items;
}

function count(value: string, option: string, min = 1): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new Error(`${option}: "${value}" is not an integer >= ${min}`);
  return n;
}
