// The files every pod's containers see at /etc/hostname, /etc/hosts and /etc/resolv.conf, made
// by the rules containerd's own pod sandbox controller follows (internal/cri/server/podsandbox,
// setupSandboxFiles), so that a pod sees the same on kuasar as on containerd's runc handler.
import type { PodSpec } from './model.js';

export interface PodFiles {
  hostname: string;
  hosts: string;
  resolvConf: string;
}

export interface HostFacts {
  hostname: string;
  /** The node's own /etc/hosts and /etc/resolv.conf. */
  hosts: string;
  resolvConf: string;
}

/**
 * The hostname a pod's containers get: its own, or the node's when CRI gives none (containerd
 * then writes the node's name into /etc/hostname and leaves the pod's UTS namespace with it).
 */
export function podHostname(pod: PodSpec, host: HostFacts): string {
  return pod.hostname || host.hostname;
}

export function podFiles(pod: PodSpec, host: HostFacts): PodFiles {
  // containerd copies the node's /etc/hosts for every pod; kubelet mounts its own over it.
  return { hostname: `${podHostname(pod, host)}\n`, hosts: host.hosts, resolvConf: resolvConf(pod, host) };
}

/**
 * With no DNS config the pod gets the node's resolv.conf. A DNS config, even an empty one, is
 * the whole file (an empty one makes an empty file), as containerd writes it.
 */
function resolvConf(pod: PodSpec, host: HostFacts): string {
  const dns = pod.dns;
  if (!dns) return host.resolvConf;
  const lines: string[] = [];
  if (dns.searches.length > 0) lines.push(`search ${dns.searches.join(' ')}`);
  for (const server of dns.servers) lines.push(`nameserver ${server}`);
  if (dns.options.length > 0) lines.push(`options ${dns.options.join(' ')}`);
  return lines.map((line) => `${line}\n`).join('');
}
