// The measured parts of a run, in the order that keeps each from spoiling the next one's figures:
// the latency parts (after a warm-up), then memory, then the task rate. IN_KUASARD_KIND's
// containers live in kuasard itself (MiBs each), and what they leave behind goes back to the
// system only over seconds: the task-rate part, hundreds of them, comes after every memory phase.
import { measureParallel, measureSingle, warmUp } from './part-latency.js';
import { measureMemory } from './part-memory.js';
import { measureTaskRatePart } from './part-task-rate.js';
import type { PartContext } from './part-context.js';

/** Runs the parts settings.parts asks for; what they measure goes into ctx.data as they go. */
export async function measureParts(ctx: PartContext): Promise<void> {
  const parts = ctx.settings.parts;
  if (parts.includes('single') || parts.includes('parallel')) await warmUp(ctx);
  if (parts.includes('single')) await measureSingle(ctx);
  if (parts.includes('parallel')) await measureParallel(ctx);
  if (parts.includes('memory')) await measureMemory(ctx);
  if (parts.includes('task-rate')) await measureTaskRatePart(ctx);
}
