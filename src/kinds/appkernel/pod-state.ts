// What an appkernel pod saves: the gVisor sandbox process, by its pid and start time (a pid alone
// may name another process after a restart). Everything else runsc keeps in its own root.
import * as check from '../../base/schema.js';
import { stateCodec } from '../../kind-api/state.js';

export interface AppkernelPodState {
  /** runsc-sandbox, the pod's user-space kernel; null until Controller Start. */
  sentry: { pid: number; startTime: string } | null;
}

export const podState = stateCodec<AppkernelPodState>(
  1,
  check.object({ sentry: check.object({ pid: check.number().int().min(2), startTime: check.string().regex(/^\d+$/) }).nullable() }),
);
