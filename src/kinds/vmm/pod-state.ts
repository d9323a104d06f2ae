// What a vmm pod saves: its QEMU process, by pid and start time (a pid alone may name another
// process after a restart), so that a later run can end the VM rather than leak it, and the
// taps it made in the pod's network namespace.
import { z } from 'zod';
import { stateCodec } from '../../kind-api/state.js';

export interface VmmPodState {
  /** null until Controller Start, and again once the VM has been ended. */
  vm: { pid: number; startTime: string } | null;
  /** The taps made in the pod's network namespace, beside the interface each one serves. */
  taps: { name: string; tap: string }[];
}

const linkName = z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/);

export const podState = stateCodec<VmmPodState>(
  2,
  z.object({
    vm: z.object({ pid: z.number().int().min(2), startTime: z.string().regex(/^\d+$/) }).nullable(),
    taps: z.array(z.object({ name: linkName, tap: linkName })),
  }),
);
