// Which handlers a run measures, and in which order. Latency parts interleave the handlers (each
// round runs every handler once, in an order that rotates from round to round) so that whatever
// else the machine does hits both sides alike. Memory parts take one handler at a time, and
// IN_KUASARD_KIND's last: its containers live in kuasard itself (MiBs each), and what they leave
// behind goes back to the system only over seconds. A kind with a warm pool has two series on
// its one handler (warm starts, cold starts): both in the one-at-a-time rounds, its cold one in the
// parallel batches, its warm one (pods the pool serves, the pool beside them) in the memory part.
import { findKind } from '../kinds/index.js';
import { IN_KUASARD_KIND } from './kinds.js';
import type { HandlerInfo } from './results.js';

/** kuasar's handlers for the requested kinds (every kind the environment serves by default), then the baseline. */
export function chooseHandlers(
  handlers: { baseline: string; kuasar: Readonly<Record<string, string>> },
  kinds: readonly string[],
): HandlerInfo[] {
  const served = handlers.kuasar;
  const wanted = kinds.length > 0 ? kinds : Object.keys(served).filter((kind) => !findKind(kind)?.bench?.onlyWhenAsked);
  const unknown = wanted.filter((kind) => served[kind] === undefined);
  if (unknown.length > 0)
    throw new Error(`kind(s) ${unknown.join(', ')} not served by this kuasard (it serves: ${Object.keys(served).join(', ') || 'none'})`);
  return [...wanted.flatMap((kind) => seriesOf(kind, served[kind] as string)), { handler: handlers.baseline, side: 'baseline' }];
}

/**
 * A kind's series: its handler, or for a kind with a warm pool (KindBenchmark.warmPool) two on
 * the same handler, warm starts and cold ones, side by side in every round.
 */
function seriesOf(kind: string, handler: string): HandlerInfo[] {
  if (!findKind(kind)?.bench?.warmPool) return [{ handler, side: 'kuasar', kind }];
  return (['warm', 'cold'] as const).map((pool) => ({
    handler: `${handler} ${pool}`,
    runtimeHandler: handler,
    side: 'kuasar',
    kind,
    pool,
  }));
}

/** The series of a part that measures a kind once: a kind with a warm pool takes part with one of its series only. */
export function oneSeriesPerKind(handlers: readonly HandlerInfo[], pool: 'warm' | 'cold'): HandlerInfo[] {
  return handlers.filter((h) => h.pool === undefined || h.pool === pool);
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
