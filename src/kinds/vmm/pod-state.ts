// What a vmm pod saves: its QEMU process, by pid and start time (a pid alone may name another
// process after a restart) and the name it runs under, so that a later run can take the VM over, or end it rather than leak
// it; the taps it made in the pod's network namespace; and where the agent pinned the pod's
// namespaces in the guest, which the next run's new containers join.
import { z } from 'zod';
import { stateCodec } from '../../kind-api/state.js';

export interface VmmPodState {
  /**
   * null until Controller Start, and again once the VM has been ended. `name` is QEMU's -name, by
   * which the process is recognised (absent: the sandbox's own, vmName; a warm VM keeps its own).
   */
  vm: { pid: number; startTime: string; name?: string } | null;
  /** The taps made in the pod's network namespace, beside the interface each one serves. */
  taps: { name: string; tap: string }[];
  /** Guest paths of the namespaces the agent pinned for the pod; null until the VM is set up. */
  guestNamespaces: { ipc: string; uts: string; pid: string | null } | null;
}

const linkName = z.string().regex(/^[A-Za-z0-9_.-]{1,15}$/);

const guestPath = z.string().regex(/^\/[^\0]*$/);

export const podState = stateCodec<VmmPodState>(
  3,
  z.object({
    vm: z
      .object({
        pid: z.number().int().min(2),
        startTime: z.string().regex(/^\d+$/),
        name: z
          .string()
          .regex(/^kuasar-vmm-[A-Za-z0-9_.-]+$/)
          .optional(),
      })
      .nullable(),
    taps: z.array(z.object({ name: linkName, tap: linkName })),
    guestNamespaces: z.object({ ipc: guestPath, uts: guestPath, pid: guestPath.nullable() }).nullable(),
  }),
);
