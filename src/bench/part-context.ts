// What every measured part of a run works with (the environment, the settings, the progress
// display, the interrupt signal, the handlers, the measurements so far), and the two things the
// parts do alike: start a timed pod under a name unique in the run, and clear the environment of
// pods before figures that another part's leftovers would spoil.
import type { Environment } from '../devenv/environment.js';
import type { Measurements } from './measurements.js';
import { removePods, startTimedPod, type StartedPod } from './pods.js';
import type { BenchProgress } from './progress.js';
import { runtimeHandlerOf, type HandlerInfo } from './results.js';
import type { BenchSettings } from './settings.js';
import { watchPools, type PoolWatch } from './warm-pool.js';

/** Pods started or removed at once while filling up for a memory point, or cleaning up. */
export const POOL = 8;

export interface PartContext {
  readonly env: Environment;
  readonly settings: BenchSettings;
  readonly progress: BenchProgress;
  /** Aborted on Ctrl-C: a part stops at its next step. */
  readonly signal: AbortSignal;
  readonly handlers: readonly HandlerInfo[];
  readonly data: Measurements;
  /** The warm pools of the measured kinds (warm-pool.ts). */
  readonly pools: readonly PoolWatch[];
  /** Starts one timed pod of the handler, named bench-<n>: for a pool's cold series, one the pool cannot serve. */
  startPod(handler: HandlerInfo): Promise<StartedPod>;
  /** Until every warm pool is full, none of it booting (at once without one). */
  untilPoolsFull(): Promise<void>;
}

export function partContext(fields: Omit<PartContext, 'startPod' | 'untilPoolsFull' | 'pools'>): PartContext {
  let podSeq = 0;
  const pools = watchPools(fields.handlers, fields.env.paths);
  return {
    ...fields,
    pools,
    startPod: (handler) => {
      podSeq += 1;
      const coldPod = handler.pool === 'cold' ? pools.find((p) => p.kind === handler.kind)?.pool.coldPod : undefined;
      return startTimedPod(fields.env, {
        handler: runtimeHandlerOf(handler),
        ...(handler.kind ? { kind: handler.kind } : {}),
        name: `bench-${podSeq}`,
        hostNetwork: fields.settings.hostNetwork,
        ...(coldPod ? { memoryLimitMib: coldPod.memoryLimitMib } : {}),
      });
    },
    untilPoolsFull: async () => {
      for (const pool of pools) await pool.untilFull(fields.signal);
    },
  };
}

/** Leaves no pod running: a pod a failed removal left behind would count in the next figures. */
export async function removeEveryPod(env: Environment): Promise<void> {
  const { items } = await env.cri.runtime.listPodSandbox({});
  const problems = await removePods(
    env,
    items.map((pod) => pod.id),
    POOL,
  );
  if (problems.length > 0) throw new Error(`pods left from earlier phases could not be removed: ${problems.join('; ')}`);
}
