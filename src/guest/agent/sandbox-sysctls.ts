// Sets the pod's sysctls in the guest. The VM is the pod's alone, so its network namespace is
// the pod's; IPC and UTS sysctls belong to the namespaces pinned for the pod, which the agent
// itself is not in: the main thread joins the pinned one for the writes and comes back, all
// synchronously (a /proc/sys write acts on the writing thread's namespace).
import { closeSync, openSync, writeFileSync } from 'node:fs';

import { checkPodSysctls, sysctlNamespace } from '../../linux/sysctls.js';
import { CLONE_NEWIPC, CLONE_NEWUTS, setns } from '../../linux/libc/namespaces.js';

export interface PinnedPaths {
  ipc: string;
  uts: string;
}

/** /proc/sys/<name with dots as slashes>. */
export function sysctlPath(name: string): string {
  return `/proc/sys/${name.replaceAll('.', '/')}`;
}

/** Checks every sysctl first (InvalidArgument names the first bad one), then sets them. */
export function applySysctls(sysctls: Readonly<Record<string, string>>, pinned: PinnedPaths): void {
  checkPodSysctls(sysctls, { net: true, ipc: true, uts: true });
  for (const [name, value] of Object.entries(sysctls)) {
    const namespace = sysctlNamespace(name);
    const write = (): void => writeFileSync(sysctlPath(name), value);
    if (namespace === 'ipc') inNamespace(pinned.ipc, 'ipc', CLONE_NEWIPC, write);
    else if (namespace === 'uts') inNamespace(pinned.uts, 'uts', CLONE_NEWUTS, write);
    else write();
  }
}

function inNamespace(target: string, kind: string, nstype: number, work: () => void): void {
  const home = openSync(`/proc/thread-self/ns/${kind}`, 'r');
  const joined = openSync(target, 'r');
  try {
    setns(joined, nstype);
    try {
      work();
    } finally {
      setns(home, nstype);
    }
  } finally {
    closeSync(joined);
    closeSync(home);
  }
}
