// What every measured part of a run works with (the environment, the settings, the progress
// display, the interrupt signal, the handlers, the measurements so far), and the two things the
// parts do alike: start a timed pod under a name unique in the run, and clear the environment of
// pods before figures that another part's leftovers would spoil.
import type { Environment } from '../devenv/environment.js';
import type { Measurements } from './measurements.js';
import { removePods, startTimedPod, type StartedPod } from './pods.js';
import type { BenchProgress } from './progress.js';
import type { HandlerInfo } from './results.js';
import type { BenchSettings } from './settings.js';

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
  /** Starts one timed pod of the handler, named bench-<n>. */
  startPod(handler: HandlerInfo): Promise<StartedPod>;
}

export function partContext(fields: Omit<PartContext, 'startPod'>): PartContext {
  let podSeq = 0;
  return {
    ...fields,
    startPod: (handler) => {
      podSeq += 1;
      return startTimedPod(fields.env, {
        handler: handler.handler,
        ...(handler.kind ? { kind: handler.kind } : {}),
        name: `bench-${podSeq}`,
        hostNetwork: fields.settings.hostNetwork,
      });
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
