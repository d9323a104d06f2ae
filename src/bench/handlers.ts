// Which handlers a run measures, and in which order. Latency parts interleave the handlers (each
// round runs every handler once, in an order that rotates from round to round) so that whatever
// else the machine does hits both sides alike. Memory parts take one handler at a time, and
// IN_KUASARD_KIND's last: its containers live in kuasard itself (MiBs each), and what they leave
// behind goes back to the system only over seconds.
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
