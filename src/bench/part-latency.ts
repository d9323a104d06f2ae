// The pod start latency parts: a warm-up, then one pod at a time and batches of pods in parallel.
// Every round runs each handler once, in an order that rotates from round to round (roundOrder),
// so that whatever else the machine does hits both sides alike. With a warm pool in the run, every
// one-at-a-time start waits until the pool is full again (warm-pool.ts).
import { oneSeriesPerKind, roundOrder } from './handlers.js';
import { POOL, type PartContext } from './part-context.js';
import { removePod, removePods, type StartedPod } from './pods.js';
import type { HandlerInfo, ParallelResult, SingleResult } from './results.js';
import { countsFor } from './settings.js';
import { median } from './stats.js';

/** One untimed pod per handler: the first start of each pays for caches the others reuse. */
export async function warmUp(ctx: PartContext): Promise<void> {
  ctx.progress.begin('warm-up', ctx.handlers.length);
  for (const handler of ctx.handlers) {
    ctx.signal.throwIfAborted();
    await ctx.untilPoolsFull();
    const pod = await ctx.startPod(handler);
    await removePod(ctx.env, pod.podId);
    ctx.progress.tick(handler.handler);
  }
  ctx.progress.end();
}

/** Pods started one at a time: each start timed from RunPodSandbox to a running container. */
export async function measureSingle(ctx: PartContext): Promise<void> {
  const { data, handlers, progress } = ctx;
  const roundsOf = (h: HandlerInfo) => countsFor(ctx.settings, h.kind).singleRounds;
  progress.begin('one pod at a time', sum(handlers.map(roundsOf)));
  for (const h of handlers) data.single[h.handler] = { ms: [], sandboxMs: [], failures: [] };
  for (let round = 0; round < Math.max(...handlers.map(roundsOf)); round++) {
    // A handler with fewer rounds (a kind whose pods start slowly) takes part in the first ones.
    for (const handler of roundOrder(
      handlers.filter((h) => round < roundsOf(h)),
      round,
    )) {
      ctx.signal.throwIfAborted();
      // A warm pool refilling after a claim would load the CPU under this start: it waits.
      await ctx.untilPoolsFull();
      const entry = data.single[handler.handler] as SingleResult;
      let pod: StartedPod;
      try {
        pod = await ctx.startPod(handler);
      } catch (err) {
        entry.failures.push(`round ${round + 1}: ${(err as Error).message}`);
        progress.tick(`${handler.handler} failed`);
        continue;
      }
      entry.ms.push(pod.ms);
      entry.sandboxMs.push(pod.sandboxMs);
      data.singleStarts.push({ handler: handler.handler, pod });
      progress.tick(`${handler.handler} ${pod.ms.toFixed(0)} ms`);
      await removePod(ctx.env, pod.podId).catch((err: Error) => entry.failures.push(`round ${round + 1}, removal: ${err.message}`));
    }
  }
  progress.end(handlers.map((h) => `${h.handler} p50 ${fmtMedian(data.single[h.handler]?.ms)}`).join(', '));
}

/** Batches of pods started at once: the wall time of a batch, and each pod's own start time. */
export async function measureParallel(ctx: PartContext): Promise<void> {
  const { data, progress } = ctx;
  // A kind with a warm pool: its cold series, each pod booting its VM (a batch would empty a pool in its first pods).
  const handlers = oneSeriesPerKind(ctx.handlers, 'cold');
  const countsOf = (h: HandlerInfo) => countsFor(ctx.settings, h.kind);
  const sizes = [...new Set(handlers.map((h) => countsOf(h).parallelPods))];
  const title =
    sizes.length === 1
      ? `${sizes[0]} pods in parallel`
      : `pods in parallel (${handlers.map((h) => `${h.handler} ${countsOf(h).parallelPods}`).join(', ')})`;
  progress.begin(title, sum(handlers.map((h) => countsOf(h).parallelRounds)));
  for (const h of handlers) data.parallel[h.handler] = { pods: countsOf(h).parallelPods, rounds: [], failures: [] };
  for (let round = 0; round < Math.max(...handlers.map((h) => countsOf(h).parallelRounds)); round++) {
    for (const handler of roundOrder(
      handlers.filter((h) => round < countsOf(h).parallelRounds),
      round,
    )) {
      ctx.signal.throwIfAborted();
      const entry = data.parallel[handler.handler] as ParallelResult;
      const outcomes = await Promise.allSettled(Array.from({ length: entry.pods }, () => ctx.startPod(handler)));
      const pods = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
      const failed = outcomes.flatMap((o) => (o.status === 'rejected' ? [(o.reason as Error).message] : []));
      entry.failures.push(
        ...(await removePods(
          ctx.env,
          pods.map((p) => p.podId),
          POOL,
        )),
      );
      if (failed.length > 0) {
        // A batch with a failed pod has no meaningful wall time: it is left out.
        entry.failures.push(`round ${round + 1}: ${failed.length} of ${entry.pods} pods failed, first: ${failed[0]}`);
        progress.tick(`${handler.handler} failed`);
        continue;
      }
      const wallMs = Math.max(...pods.map((p) => p.endedAt)) - Math.min(...pods.map((p) => p.startedAt));
      entry.rounds.push({ wallMs, podMs: pods.map((p) => p.ms) });
      data.parallelStarts.push(...pods.map((pod) => ({ handler: handler.handler, pod })));
      progress.tick(`${handler.handler} ${wallMs.toFixed(0)} ms`);
    }
  }
  progress.end(handlers.map((h) => `${h.handler} wall p50 ${fmtMedian(data.parallel[h.handler]?.rounds.map((r) => r.wallMs))}`).join(', '));
}

const sum = (values: readonly number[]) => values.reduce((total, v) => total + v, 0);

/** A phase's closing line shows each handler's median, or a dash when it has none. */
function fmtMedian(values: readonly number[] | undefined): string {
  return values && values.length > 0 ? `${median(values).toFixed(0)} ms` : '-';
}
