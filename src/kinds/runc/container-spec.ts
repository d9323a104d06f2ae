// How a container's OCI spec (as CRI wrote it) is bent to live in its runc pod: it joins the
// pod's pinned IPC/UTS namespaces, its network namespace and (when the pod shares one) its PID
// namespace, gets the pod's sysctls, and sees the pod's own /etc files and /dev/shm instead of
// files CRI would have made for a pause container.
import { internal } from '../../base/errors.js';
import type { PodSpec } from '../../base/model.js';
import {
  isBindMount,
  mountAt,
  upsertMount,
  withNamespacePath,
  withNewNamespace,
  withoutNamespace,
  withRootPath,
  type LinuxNamespaceType,
  type Spec,
} from '../../oci/spec.js';

/** Where the pod's shared pieces are on the host. */
export interface PodLayout {
  pod: PodSpec;
  netnsPath: string;
  ipcPath: string | null; // null: the host's IPC namespace
  utsPath: string | null; // null: the host's UTS namespace
  /** The pod's shared PID namespace, given when pod.pidMode is 'pod'. */
  pidPath: string | null;
  hostnameFile: string;
  hostsFile: string;
  resolvConfFile: string;
  shmDir: string;
}

/** Joins the pod's namespace at `path`, or (null) shares the host's: OCI says that by leaving it out. */
const withPodNamespace = (spec: Spec, type: LinuxNamespaceType, path: string | null): Spec =>
  path === null ? withoutNamespace(spec, type) : withNamespacePath(spec, type, path);

/** CRI points the PID namespace at /proc/<sandbox pid>/ns/pid: the pod's own, a new one, or the host's. */
function withPodPidNamespace(spec: Spec, layout: PodLayout): Spec {
  switch (layout.pod.pidMode) {
    case 'container':
      return withNewNamespace(spec, 'pid');
    case 'node':
      return withoutNamespace(spec, 'pid');
    case 'pod':
      if (layout.pidPath === null) throw internal("a pod that shares its PID namespace needs the namespace's path");
      return withNamespacePath(spec, 'pid', layout.pidPath);
  }
}

/**
 * The pod's /etc files and /dev/shm, where the container brings none of its own: as containerd's
 * runc path, a mount the container config asks for at one of these paths (kubelet's /etc/hosts,
 * say) wins. CRI writes no mount of a proxy sandbox's files into the spec, so a bind mount found
 * there is the container's; at /dev/shm CRI's default is a tmpfs, which the pod's replaces. The
 * /etc files are read-only in a container with a read-only root, as containerd mounts them.
 */
function withPodMounts(cri: Spec, layout: PodLayout): Spec {
  const etcOptions = ['rbind', 'rprivate', cri.root?.readonly ? 'ro' : 'rw'];
  const podMounts = [
    { destination: '/etc/hostname', source: layout.hostnameFile, options: etcOptions },
    { destination: '/etc/hosts', source: layout.hostsFile, options: etcOptions },
    { destination: '/etc/resolv.conf', source: layout.resolvConfFile, options: etcOptions },
    { destination: '/dev/shm', source: layout.shmDir, options: ['rbind', 'rprivate', 'rw'] },
  ];
  let spec = cri;
  for (const mount of podMounts) {
    const own = mountAt(cri, mount.destination);
    if (own && isBindMount(own)) continue;
    spec = upsertMount(spec, { ...mount, type: 'bind' });
  }
  return spec;
}

export function podContainerSpec(cri: Spec, rootPath: string, layout: PodLayout): Spec {
  let spec = withRootPath(cri, rootPath);
  spec = withPodNamespace(spec, 'ipc', layout.ipcPath);
  spec = withPodNamespace(spec, 'uts', layout.utsPath);
  spec = withPodNamespace(spec, 'network', layout.pod.hostNetwork ? null : layout.netnsPath);
  spec = withPodPidNamespace(spec, layout);
  spec = withPodMounts(spec, layout);
  // Pod sysctls are namespaced (checked at pod create): each container writes the same values
  // into the namespaces the pod shares. The container's own entries win.
  const sysctl = { ...layout.pod.sysctls, ...spec.linux?.sysctl };
  // The hostname lives in the pod's UTS namespace already; runc must not set it again (and
  // cannot, when the pod shares the host's).
  const { hostname: _ignored, ...rest } = spec;
  return { ...rest, linux: { ...spec.linux, ...(Object.keys(sysctl).length > 0 ? { sysctl } : {}) } };
}
