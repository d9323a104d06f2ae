// Per-stage durations of a pod's life (controller calls, task calls, OCI runtime calls, mounts),
// logged as `stage` records so that a benchmark can show where the time of a pod start goes, and
// handed to one observer (kuasard's metrics, when they are served) so that the same stages feed a
// histogram without this layer knowing of it.
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
    const logged = log.isLevelEnabled('debug');
    if (logged || observer) {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (logged) log.debug({ stage, ms }, 'stage');
      observer?.(stage, ms / 1000);
    }
  }
}
