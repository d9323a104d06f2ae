// How a container's OCI spec (as CRI wrote it) is bent to live in its runc pod: it joins the
// pod's pinned IPC/UTS namespaces, its network namespace and (when the pod shares one) its PID
// namespace, gets the pod's sysctls, and sees the pod's own /etc files and /dev/shm instead of
// files CRI would have made for a pause container.
import { internal } from '../../core/errors.js';
import type { PodSpec } from '../../core/model.js';

/** The slice of the OCI runtime spec this transform reads and writes. */
export interface PodContainerSpec {
  hostname?: string;
  root?: { path: string; readonly?: boolean };
  mounts?: { destination: string; type?: string; source?: string; options?: string[] }[];
  linux?: { namespaces?: { type: string; path?: string }[]; sysctl?: Record<string, string>; [key: string]: unknown };
  [key: string]: unknown;
}

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

type Namespace = { type: string; path?: string };

function setNamespace(namespaces: Namespace[], type: string, path: string | null): Namespace[] {
  const others = namespaces.filter((ns) => ns.type !== type);
  // null means "share the host's": an absent namespace entry is how OCI says that.
  return path === null ? others : [...others, { type, path }];
}

export function podContainerSpec<S extends PodContainerSpec>(spec: S, rootPath: string, layout: PodLayout): S {
  let namespaces: Namespace[] = [...(spec.linux?.namespaces ?? [])];
  namespaces = setNamespace(namespaces, 'ipc', layout.ipcPath);
  namespaces = setNamespace(namespaces, 'uts', layout.utsPath);
  namespaces = setNamespace(namespaces, 'network', layout.pod.hostNetwork ? null : layout.netnsPath);
  // CRI points the namespaces it thinks the pod owns at /proc/<sandbox pid>/ns: each is replaced
  // by the pod's real one, or a new one (the sandbox pid is 0 unless the pod shares its PID
  // namespace).
  namespaces = namespaces.filter((ns) => ns.type !== 'pid');
  if (layout.pod.pidMode === 'container') namespaces.push({ type: 'pid' });
  if (layout.pod.pidMode === 'pod') {
    if (layout.pidPath === null) throw internal('a pod that shares its PID namespace needs the namespace\'s path');
    namespaces.push({ type: 'pid', path: layout.pidPath });
  }
  // Pod sysctls are namespaced (checked at pod create): each container writes the same values
  // into the namespaces the pod shares. The container's own entries win.
  const sysctl = { ...layout.pod.sysctls, ...spec.linux?.sysctl };

  const podMounts = [
    { destination: '/etc/hostname', source: layout.hostnameFile },
    { destination: '/etc/hosts', source: layout.hostsFile },
    { destination: '/etc/resolv.conf', source: layout.resolvConfFile },
    { destination: '/dev/shm', source: layout.shmDir },
  ].map((m) => ({ ...m, type: 'bind', options: ['rbind', 'rprivate', 'rw'] }));
  const replaced = new Set(podMounts.map((m) => m.destination));
  const mounts = [...(spec.mounts ?? []).filter((m) => !replaced.has(m.destination)), ...podMounts];

  // The hostname lives in the pod's UTS namespace already; runc must not set it again (and
  // cannot, when the pod shares the host's).
  const { hostname: _ignored, ...rest } = spec;
  return {
    ...rest,
    root: { ...spec.root, path: rootPath },
    mounts,
    linux: { ...spec.linux, namespaces, ...(Object.keys(sysctl).length > 0 ? { sysctl } : {}) },
  } as S;
}
