// What the runc kind keeps of a pod in the sandbox's state file, and the check it passes before
// it is believed after a restart: these values name mounts to unmount, processes to kill and
// cgroups to remove, so a damaged or foreign value must never be acted on.
import { join } from 'node:path';
import * as check from '../../base/schema.js';
import { stateCodec, type StateCodec } from '../../kind-api/state.js';
import type { PidNamespaceHolder } from '../../linux/pid-holder.js';

export interface RuncPodState {
  ipcPath: string | null;
  utsPath: string | null;
  /** The process that holds the pod's shared PID namespace, while the pod runs. */
  pidHolder: PidNamespaceHolder | null;
}

/** Where a pod's namespaces are pinned, inside its sandbox directory. */
export const namespacesDir = (sandboxDir: string): string => join(sandboxDir, 'ns');

/** The cgroup (below the pod's cgroup parent) of the holder of a pod's PID namespace; named after the sandbox so it can be found again. */
export const holderCgroupName = (sandboxId: string): string => `kuasar-pidns-${sandboxId}`;

/** Where the holder's cgroup goes: below the pod's cgroup parent; none when the pod has no parent. */
export function holderCgroupsPath(sandboxId: string, cgroupParent: string): string | undefined {
  return cgroupParent ? `${cgroupParent.replace(/\/+$/, '')}/${holderCgroupName(sandboxId)}` : undefined;
}

/** The state of the pod with id `sandboxId` whose directory is `sandboxDir`: only values the kind writes for it pass. */
export function podStateCodec(sandboxId: string, sandboxDir: string): StateCodec<RuncPodState> {
  const pinned = (name: string) => check.literal(join(namespacesDir(sandboxDir), name)).nullable();
  const schema = check.object({
    ipcPath: pinned('ipc'),
    utsPath: pinned('uts'),
    pidHolder: check
      .object({
        pid: check.number().int().min(2),
        startTime: check.string().regex(/^\d+$/),
        cgroupsPath: check
          .string()
          .refine((path) => path.endsWith(`/${holderCgroupName(sandboxId)}`), "not the cgroup of this pod's holder")
          .nullable(),
      })
      .nullable(),
  });
  return stateCodec(1, schema);
}
