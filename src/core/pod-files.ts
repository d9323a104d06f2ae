// The files every pod's containers see at /etc/hostname, /etc/hosts and /etc/resolv.conf,
// derived from the pod's CRI configuration the way kubelet users expect them.
import type { PodSpec } from './model.js';

export interface PodFiles {
  hostname: string;
  hosts: string;
  resolvConf: string;
}

export interface HostFacts {
  hostname: string;
  /** The node's own /etc/hosts and /etc/resolv.conf, used for host-network pods and as DNS fallback. */
  hosts: string;
  resolvConf: string;
}

const LOCALHOST_ENTRIES = [
  '127.0.0.1\tlocalhost',
  '::1\tlocalhost ip6-localhost ip6-loopback',
  'fe00::0\tip6-localnet',
  'fe00::0\tip6-mcastprefix',
  'fe00::1\tip6-allnodes',
  'fe00::2\tip6-allrouters',
];

/** The hostname a pod's containers get: the node's for host-network pods without one of their own. */
export function podHostname(pod: PodSpec, host: HostFacts): string {
  if (pod.hostname) return pod.hostname;
  return pod.hostNetwork ? host.hostname : pod.name;
}

export function podFiles(pod: PodSpec, host: HostFacts): PodFiles {
  const hostname = podHostname(pod, host);
  const hosts = pod.hostNetwork ? host.hosts : `${LOCALHOST_ENTRIES.join('\n')}\n`;
  return { hostname: `${hostname}\n`, hosts, resolvConf: resolvConf(pod, host) };
}

function resolvConf(pod: PodSpec, host: HostFacts): string {
  const dns = pod.dns;
  if (!dns || (dns.servers.length === 0 && dns.searches.length === 0 && dns.options.length === 0)) {
    return host.resolvConf;
  }
  const lines: string[] = [];
  if (dns.searches.length > 0) lines.push(`search ${dns.searches.join(' ')}`);
  for (const server of dns.servers) lines.push(`nameserver ${server}`);
  if (dns.options.length > 0) lines.push(`options ${dns.options.join(' ')}`);
  return `${lines.join('\n')}\n`;
}
