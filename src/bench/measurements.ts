// What a run has measured so far: the parts fill it as they go (an interrupted run keeps what was
// done), and the summaries and fits are computed once at the end, from whatever is there.
import { podMemoryCost } from './pod-memory.js';
import type { StartedPod } from './pods.js';
import type { MemoryResult, ParallelResult, SingleResult, TaskRateResult } from './results.js';
import { stageTotals, type StageRecord } from './stages.js';
import { linearFit, summarize } from './stats.js';

/** A timed start of one handler, kept for matching kuasard's stage records to it. */
export interface HandlerStart {
  handler: string;
  pod: StartedPod;
}

export interface Measurements {
  single: Record<string, SingleResult>;
  parallel: Record<string, ParallelResult>;
  memory: Record<string, MemoryResult>;
  taskRate?: TaskRateResult;
  singleStarts: HandlerStart[];
  parallelStarts: HandlerStart[];
}

export function emptyMeasurements(): Measurements {
  return { single: {}, parallel: {}, memory: {}, singleStarts: [], parallelStarts: [] };
}

/** Whether any part got as far as a figure (a run interrupted before that has nothing to report). */
export function measuredSomething(data: Measurements): boolean {
  return (
    [data.single, data.parallel, data.memory].some((table) => Object.keys(table).length > 0) ||
    [data.taskRate?.longRunning, data.taskRate?.shortLived].some((run) => (run?.ms.length ?? 0) > 0)
  );
}

/** Summaries and fits of whatever was measured, also when the run stopped halfway. */
export function summarizeMeasurements(data: Measurements, records: readonly StageRecord[]): void {
  const podId = data.taskRate?.podId;
  for (const run of [data.taskRate?.longRunning, data.taskRate?.shortLived]) {
    if (!run || podId === undefined || run.startedAt === undefined || run.endedAt === undefined) continue;
    run.stages = stageTotals(records, { sandbox: podId, startedAt: run.startedAt, endedAt: run.endedAt }, run.containers);
  }
  for (const entry of Object.values(data.single)) {
    if (entry.ms.length > 0) entry.summary = summarize(entry.ms);
    if (entry.sandboxMs.length > 0) entry.sandboxSummary = summarize(entry.sandboxMs);
  }
  for (const entry of Object.values(data.parallel)) {
    if (entry.rounds.length > 0) entry.wall = summarize(entry.rounds.map((r) => r.wallMs));
  }
  for (const entry of Object.values(data.memory)) {
    if (new Set(entry.points.map((p) => p.pods)).size >= 2) {
      entry.fit = linearFit(entry.points.map((p) => ({ x: p.pods, y: p.pssKb })));
      const afterGc = entry.points.every((p) => p.afterGc !== undefined);
      entry.fitPrivate = linearFit(entry.points.map((p) => ({ x: p.pods, y: afterGc && p.afterGc ? p.afterGc.privateKb : p.privateKb })));
    }
    const podCost = podMemoryCost(entry);
    if (podCost) entry.podCost = podCost;
  }
}
