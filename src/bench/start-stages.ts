// Where kuasar's timed pod starts spent their time: kuasard logs a record per stage, and each
// start takes the records that fall inside its window (stages.ts does the matching and the sums).
import type { HandlerStart, Measurements } from './measurements.js';
import type { StartedPod } from './pods.js';
import type { BenchResult, HandlerInfo } from './results.js';
import { recordsOfStart, stageBreakdown, type StageRecord, type StartWindow } from './stages.js';

/** Stage breakdowns of each kuasar handler's timed starts. */
export function breakdownsByHandler(
  handlers: readonly HandlerInfo[],
  data: Measurements,
  records: readonly StageRecord[],
): BenchResult['stages'] {
  const stages: BenchResult['stages'] = {};
  const startsOf = (starts: readonly HandlerStart[], handler: string) => starts.filter((s) => s.handler === handler);
  for (const h of handlers.filter((handler) => handler.side === 'kuasar')) {
    // One pod at a time, kuasard does nothing else: records without a sandbox id are this pod's.
    const single = stageBreakdown(
      startsOf(data.singleStarts, h.handler).map(({ pod }) => ({
        ms: pod.ms,
        records: recordsOfStart(records, windowOf(pod), { includeUnnamed: true }),
      })),
      { everyRpc: true },
    );
    const parallel = stageBreakdown(
      startsOf(data.parallelStarts, h.handler).map(({ pod }) => ({
        ms: pod.ms,
        records: recordsOfStart(records, windowOf(pod), { includeUnnamed: false }),
      })),
      { everyRpc: false },
    );
    if (single || parallel) stages[h.handler] = { ...(single ? { single } : {}), ...(parallel ? { parallel } : {}) };
  }
  return stages;
}

/** The window a start's stage records are matched to. */
export function windowOf(pod: StartedPod): StartWindow {
  return { sandbox: pod.podId, startedAt: pod.startedAt, endedAt: pod.endedAt };
}
