// Per-stage durations of a pod's life (controller calls, task calls, OCI runtime calls, mounts),
// logged as `stage` records so that a benchmark can show where the time of a pod start goes.
import type { Logger } from 'pino';

export async function timed<T>(log: Logger, stage: string, work: () => Promise<T>): Promise<T> {
  const started = process.hrtime.bigint();
  try {
    return await work();
  } finally {
    if (log.isLevelEnabled('debug')) {
      log.debug({ stage, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'stage');
    }
  }
}
