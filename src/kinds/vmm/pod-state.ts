// What a vmm pod saves: its QEMU process, by pid and start time (a pid alone may name another
// process after a restart), so that a later run can end the VM rather than leak it.
import { z } from 'zod';
import { stateCodec } from '../../kind-api/state.js';

export interface VmmPodState {
  /** null until Controller Start, and again once the VM has been ended. */
  vm: { pid: number; startTime: string } | null;
}

export const podState = stateCodec<VmmPodState>(
  1,
  z.object({ vm: z.object({ pid: z.number().int().min(2), startTime: z.string().regex(/^\d+$/) }).nullable() }),
);
