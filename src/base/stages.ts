// Per-stage durations of a pod's life (controller calls, task calls, OCI runtime calls, mounts),
// logged as `stage` records so that a benchmark can show where the time of a pod start goes, and
// handed to one observer (kuasard's metrics, when they are served) so that the same stages feed a
// histogram without this layer knowing of it. A record is logged when its stage ends: its time is
// the stage's end, its `ms` the duration.
import type { Logger } from 'pino';

/** Told every stage's name and duration in seconds. */
export type StageObserver = (stage: string, seconds: number) => void;

let observer: StageObserver | undefined;

/** Sets (or with undefined, removes) the one observer of every stage timed in this process. */
export function observeStages(next: StageObserver | undefined): void {
  observer = next;
}

export async function timed<T>(log: Logger, stage: string, work: () => Promise<T>): Promise<T> {
  const started = process.hrtime.bigint();
  try {
    return await work();
  } finally {
    // Measured only when someone takes it: most stages are short, and most daemons log at info.
    if (observer || log.isLevelEnabled('debug')) logStage(log, stage, Number(process.hrtime.bigint() - started) / 1e6);
  }
}

/**
 * A stage that ends now and whose duration was measured elsewhere (by another clock, such as a
 * guest's uptime). Log it before the record of any stage that holds it: a reader finds a stage's
 * enclosing one among the records logged after it.
 */
export function logStage(log: Logger, stage: string, ms: number): void {
  if (log.isLevelEnabled('debug')) log.debug({ stage, ms }, 'stage');
  observer?.(stage, ms / 1000);
}
