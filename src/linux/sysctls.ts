// Pod sysctls (LinuxPodSandboxConfig.sysctls). Only namespaced ones can be set for one pod, and
// only those runc (which applies them for containerd's own runc handler) lets through: net.* in
// the network namespace; kernel.msgmax, msgmnb, msgmni, sem, shmall, shmmax, shmmni,
// shm_rmid_forced and fs.mqueue.* in the IPC namespace; kernel.domainname in the UTS namespace.
// Anything else would change the node for everyone, and so would a namespaced one whose
// namespace the pod shares with the host: both are refused, as runc refuses them.

import { invalidArgument } from '../base/errors.js';

export type SysctlNamespace = 'net' | 'ipc' | 'uts';

const IPC_SYSCTLS = new Set([
  'kernel.msgmax',
  'kernel.msgmnb',
  'kernel.msgmni',
  'kernel.sem',
  'kernel.shmall',
  'kernel.shmmax',
  'kernel.shmmni',
  'kernel.shm_rmid_forced',
]);

/** The namespace a sysctl belongs to, or undefined when it is node-wide (or runc will not set it). */
export function sysctlNamespace(name: string): SysctlNamespace | undefined {
  if (name.startsWith('net.')) return 'net';
  if (IPC_SYSCTLS.has(name) || name.startsWith('fs.mqueue.')) return 'ipc';
  if (name === 'kernel.domainname') return 'uts';
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
    if (name === 'kernel.hostname') throw invalidArgument('sysctl kernel.hostname: give the pod a hostname instead');
    if (namespace === undefined)
      throw invalidArgument(`sysctl ${name} is not namespaced (or not among those runc sets): setting it for a pod would change the node`);
    if (!owns[namespace]) {
      throw invalidArgument(`sysctl ${name} belongs to the ${namespace} namespace, which the pod shares with the host`);
    }
  }
  return { ...sysctls };
}
