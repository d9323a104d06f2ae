// How a container's OCI spec (as CRI wrote it) is bent to live in its runc pod: it joins the
// pod's pinned IPC/UTS namespaces, its network namespace and (when the pod shares one) its PID
// namespace, gets the pod's sysctls, and sees the pod's own /etc files and /dev/shm instead of
// files CRI would have made for a pause container (oci-kind/pod-mounts.ts).
import { internal } from '../../base/errors.js';
import type { PodSpec } from '../../base/model.js';
import type { podDirPaths } from '../../oci-kind/pod-dir.js';
import { podEtcMounts, withPodMounts } from '../../oci-kind/pod-mounts.js';
import { withNamespacePath, withNewNamespace, withoutNamespace, withRootPath, type LinuxNamespaceType, type Spec } from '../../oci/spec.js';

/** Where the pod's shared pieces are on the host. */
export interface PodLayout {
  pod: PodSpec;
  netnsPath: string;
  ipcPath: string | null; // null: the host's IPC namespace
  utsPath: string | null; // null: the host's UTS namespace
  /** The pod's shared PID namespace, given when pod.pidMode is 'pod'. */
  pidPath: string | null;
  /** The pod's /etc files. */
  files: ReturnType<typeof podDirPaths>;
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

export function podContainerSpec(cri: Spec, rootPath: string, layout: PodLayout): Spec {
  let spec = withRootPath(cri, rootPath);
  spec = withPodNamespace(spec, 'ipc', layout.ipcPath);
  spec = withPodNamespace(spec, 'uts', layout.utsPath);
  spec = withPodNamespace(spec, 'network', layout.pod.hostNetwork ? null : layout.netnsPath);
  spec = withPodPidNamespace(spec, layout);
  spec = withPodMounts(spec, [
    ...podEtcMounts(cri, layout.files),
    { destination: '/dev/shm', type: 'bind', source: layout.shmDir, options: ['rbind', 'rprivate', 'rw'] },
  ]);
  // Pod sysctls are namespaced (checked at pod create): each container writes the same values
  // into the namespaces the pod shares. The container's own entries win.
  const sysctl = { ...layout.pod.sysctls, ...spec.linux?.sysctl };
  // The hostname lives in the pod's UTS namespace already; runc must not set it again (and
  // cannot, when the pod shares the host's).
  const { hostname: _ignored, ...rest } = spec;
  return { ...rest, linux: { ...spec.linux, ...(Object.keys(sysctl).length > 0 ? { sysctl } : {}) } };
}
