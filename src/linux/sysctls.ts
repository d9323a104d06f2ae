// Pod sysctls (LinuxPodSandboxConfig.sysctls). Only namespaced ones can be set for one pod:
// the net.* family lives in the network namespace, kernel.shm*, kernel.msg*, kernel.sem and
// fs.mqueue.* in the IPC namespace (the list Kubernetes uses). Anything else would change the
// node for everyone, and so would a namespaced one whose namespace the pod shares with the host:
// both are refused, as kubelet refuses them.

import { invalidArgument } from '../core/errors.js';

export type SysctlNamespace = 'net' | 'ipc';

/** The namespace a sysctl belongs to, or undefined when it is node-wide. */
export function sysctlNamespace(name: string): SysctlNamespace | undefined {
  if (name.startsWith('net.')) return 'net';
  if (/^kernel\.(shm|msg)/.test(name) || name === 'kernel.sem' || name.startsWith('fs.mqueue.')) return 'ipc';
  return undefined;
}

// Dotted names of letters, digits, '_' and '-' (interface names such as eth0.100 use '/' in
// the slash form, which kubelet converts before CRI); and values without line breaks.
const namePattern = /^[a-z0-9_-]+(\.[a-zA-Z0-9_-]+)+$/;

/**
 * Checks the pod's sysctls: each must be namespaced, in a namespace the pod owns (`owns`).
 * Returns them unchanged; throws InvalidArgument naming the first offender.
 */
export function checkPodSysctls(sysctls: Readonly<Record<string, string>>, owns: Record<SysctlNamespace, boolean>): Record<string, string> {
  for (const [name, value] of Object.entries(sysctls)) {
    if (!namePattern.test(name)) throw invalidArgument(`sysctl ${JSON.stringify(name)}: not a sysctl name`);
    if (/[\n\r]/.test(value)) throw invalidArgument(`sysctl ${name}: the value holds a line break`);
    const namespace = sysctlNamespace(name);
    if (namespace === undefined) throw invalidArgument(`sysctl ${name} is not namespaced: setting it for a pod would change the node`);
    if (!owns[namespace]) {
      throw invalidArgument(`sysctl ${name} belongs to the ${namespace} namespace, which the pod shares with the host`);
    }
  }
  return { ...sysctls };
}
