// The task-rate part: IN_KUASARD_KIND's containers per second through its Task API (task-rate.ts
// drives it). No baseline: containerd has no such handler. Skipped, and said so, when that kind is
// not among the run's handlers; a failure ends only this part, an interruption the run.
import { IN_KUASARD_KIND } from './kinds.js';
import { removeEveryPod, type PartContext } from './part-context.js';
import { runtimeHandlerOf, type TaskRateResult } from './results.js';
import { measureTaskRate } from './task-rate.js';

export async function measureTaskRatePart(ctx: PartContext): Promise<void> {
  const measured = ctx.handlers.find((h) => h.side === 'kuasar' && h.kind === IN_KUASARD_KIND.name);
  const { taskConcurrency, taskLongRunning, taskShortLived, hostNetwork } = ctx.settings;
  if (!measured) {
    const skipped = `the ${IN_KUASARD_KIND.name} kind is not measured in this run`;
    ctx.data.taskRate = { handler: '', skipped, concurrency: taskConcurrency, failures: [] };
    ctx.progress.note(`  · task-rate skipped: ${skipped}`);
    return;
  }
  const entry: TaskRateResult = { handler: measured.handler, concurrency: taskConcurrency, failures: [] };
  ctx.data.taskRate = entry;
  await removeEveryPod(ctx.env);
  try {
    await measureTaskRate(
      {
        env: ctx.env,
        handler: runtimeHandlerOf(measured),
        kind: IN_KUASARD_KIND.name,
        workloads: IN_KUASARD_KIND.taskRate,
        hostNetwork,
        longRunning: taskLongRunning,
        shortLived: taskShortLived,
        concurrency: taskConcurrency,
        progress: ctx.progress,
        signal: ctx.signal,
      },
      entry,
    );
  } catch (err) {
    // An interruption ends the run; any other failure ends only this part.
    if (ctx.signal.aborted) throw err;
    entry.failures.push((err as Error).message);
    ctx.progress.fail((err as Error).message);
  }
}
