// What a vmm pod saves: its QEMU process, by pid and start time (a pid alone may name another
// process after a restart) and the name it runs under, so that a later run can take the VM over, or end it rather than leak
// it; the taps it made in the pod's network namespace; and where the agent pinned the pod's
// namespaces in the guest, which the next run's new containers join.
import * as check from '../../base/schema.js';
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

const linkName = check.string().regex(/^[A-Za-z0-9_.-]{1,15}$/);

const guestPath = check.string().regex(/^\/[^\0]*$/);

export const podState = stateCodec<VmmPodState>(
  3,
  check.object({
    vm: check
      .object({
        pid: check.number().int().min(2),
        startTime: check.string().regex(/^\d+$/),
        name: check
          .string()
          .regex(/^kuasar-vmm-[A-Za-z0-9_.-]+$/)
          .optional(),
      })
      .nullable(),
    taps: check.array(check.object({ name: linkName, tap: linkName })),
    guestNamespaces: check.object({ ipc: guestPath, uts: guestPath, pid: guestPath.nullable() }).nullable(),
  }),
);
