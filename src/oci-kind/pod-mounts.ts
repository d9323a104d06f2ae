// The mounts every container of a pod gets from the pod (its /etc files, its /dev/shm), where the
// container brings none of its own: as containerd's runc path, a mount the container config asks
// for at one of these paths (kubelet's /etc/hosts, say) wins. CRI writes no mount of a proxy
// sandbox's files into the spec, so a bind mount found there is the container's; at /dev/shm
// CRI's default is a tmpfs, which the pod's replaces.
import { isBindMount, mountAt, upsertMount, type Mount, type Spec } from '../oci/spec.js';
import type { podDirPaths } from './pod-dir.js';

/**
 * The pod's /etc files as bind mounts: read-only in a container with a read-only root, as
 * containerd mounts them.
 */
export function podEtcMounts(cri: Spec, paths: ReturnType<typeof podDirPaths>): Mount[] {
  const options = ['rbind', 'rprivate', cri.root?.readonly ? 'ro' : 'rw'];
  return [
    { destination: '/etc/hostname', type: 'bind', source: paths.hostnameFile, options },
    { destination: '/etc/hosts', type: 'bind', source: paths.hostsFile, options },
    { destination: '/etc/resolv.conf', type: 'bind', source: paths.resolvConfFile, options },
  ];
}

/** `cri` with each of the pod's `mounts`, except where the container has a bind mount of its own. */
export function withPodMounts(cri: Spec, mounts: readonly Mount[]): Spec {
  let spec = cri;
  for (const mount of mounts) {
    const own = mountAt(cri, mount.destination);
    if (own && isBindMount(own)) continue;
    spec = upsertMount(spec, mount);
  }
  return spec;
}
