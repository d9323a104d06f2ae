// How a container's OCI spec (as CRI wrote it, with host paths) becomes the spec runc runs in the
// pod's guest: its root and bind-mount sources are where the sandbox's shared directory shows
// them in the guest, an emptyDir is a directory on the guest's tmpfs, it joins the IPC/UTS (and
// when shared, PID) namespaces the agent pinned, and the guest's own network namespace (which is
// the pod's: the VM is the pod), whose sysctls the agent set for the whole pod. Its cgroup is one
// of its own in the guest (the host's cgroupsPath names the pod's cgroup on the host), where the
// agent reads its figures and OOM kills; the guest is a cgroup v2 host, where containerd gives a
// container a cgroup namespace of its own, so its /sys/fs/cgroup is that cgroup (else runc would
// show it the guest's whole tree). containerd leaves privileged containers out, which the spec
// does not name: here every container gets one. What only means something on the host goes: hooks (host
// programs), AppArmor and SELinux labels (no policy is loaded in the guest), the host's CPU and
// memory-node sets.
import path from 'node:path';
import { internal } from '../../base/errors.js';
import type { PodSpec } from '../../base/model.js';
import { podEtcMounts, withPodMounts } from '../../oci-kind/pod-mounts.js';
import type { podDirPaths } from '../../oci-kind/pod-dir.js';
import {
  isBindMount,
  withNamespacePath,
  withNewNamespace,
  withoutNamespace,
  withRootPath,
  type LinuxResources,
  type Mount,
  type Spec,
} from '../../oci/spec.js';

/** Where the guest keeps each emptyDir of the pod: on its /run tmpfs, one directory per volume name. */
export const GUEST_EMPTY_DIR_ROOT = '/run/kuasar/volumes';

/** kubelet's emptyDir volumes are directories `.../pods/<pod uid>/volumes/kubernetes.io~empty-dir/<name>` on the node. */
const EMPTY_DIR = /\/pods\/([^/]+)\/volumes\/kubernetes\.io~empty-dir\/([^/]+)\/?$/;

/**
 * The emptyDir volume's name when `source` is kubelet's directory of one of the pod `podUid`'s
 * own volumes (another pod's, reached as a hostPath, is an ordinary directory of the node).
 */
export function emptyDirName(source: string, podUid: string): string | undefined {
  const [, uid, name] = EMPTY_DIR.exec(source) ?? [];
  if (!uid || uid !== podUid || name === '.' || name === '..') return undefined;
  return name;
}

/** The guest's cgroup of container `containerId`: one per container, below one parent (cgroup v2, absolute). */
export const guestCgroupsPath = (containerId: string): string => `/kuasar/${containerId}`;

/**
 * LinuxResources as the guest can apply them: cpu.cpus and cpu.mems name the host's CPUs and NUMA
 * nodes (kubelet's CPU manager pins them), which the VM does not have, so they are left out.
 */
export function guestResources(resources: LinuxResources): LinuxResources {
  if (!resources.cpu) return resources;
  const { cpus: _cpus, mems: _mems, ...cpu } = resources.cpu;
  return { ...resources, cpu };
}

/** What the guest sees of a container's host-side pieces. */
export interface GuestLayout {
  pod: PodSpec;
  /** The container's cgroup in the guest (guestCgroupsPath). */
  cgroupsPath: string;
  /** The container's rootfs, as the guest sees it through the share. */
  rootfs: string;
  /** For each of the CRI spec's mounts (same index), the guest path of its bind source; undefined for other mounts. */
  bindSources: readonly (string | undefined)[];
  /** The pod's /etc files, as the guest sees them. */
  files: ReturnType<typeof podDirPaths>;
  /** Guest paths of the namespaces the agent pinned (SetupSandbox). */
  namespaces: { ipc: string; uts: string; pid: string | null };
}

function withPodPidNamespace(spec: Spec, layout: GuestLayout): Spec {
  if (layout.pod.pidMode !== 'pod') return withNewNamespace(spec, 'pid');
  if (!layout.namespaces.pid) throw internal('the guest agent pinned no PID namespace for a pod that shares one');
  return withNamespacePath(spec, 'pid', layout.namespaces.pid);
}

/** The CRI spec's mounts with bind sources moved to where the guest sees them. */
function guestMounts(cri: Spec, layout: GuestLayout): Mount[] {
  return (cri.mounts ?? []).map((mount, index) => {
    if (!isBindMount(mount)) return mount;
    const source = layout.bindSources[index];
    if (!source) throw internal(`mount ${mount.destination}: no guest path for its source ${mount.source}`);
    return { ...mount, source };
  });
}

export function guestSpec(cri: Spec, layout: GuestLayout): Spec {
  let spec: Spec = withRootPath({ ...cri, mounts: guestMounts(cri, layout) }, layout.rootfs);
  spec = withNamespacePath(spec, 'ipc', layout.namespaces.ipc);
  spec = withNamespacePath(spec, 'uts', layout.namespaces.uts);
  spec = withoutNamespace(spec, 'network');
  spec = withPodPidNamespace(spec, layout);
  spec = withNewNamespace(spec, 'cgroup');
  spec = withPodMounts(spec, podEtcMounts(cri, layout.files));
  // The network sysctls belong to the guest's one network namespace, where the agent set the
  // pod's (SetupSandbox); runc refuses them for a container that has no namespace of its own.
  const sysctl = Object.fromEntries(
    Object.entries({ ...layout.pod.sysctls, ...spec.linux?.sysctl }).filter(([key]) => !key.startsWith('net.')),
  );
  const { hostname: _hostname, hooks: _hooks, ...rest } = spec;
  const { apparmorProfile: _apparmor, selinuxLabel: _selinux, ...proc } = (spec.process ?? {}) as Record<string, unknown>;
  const { mountLabel: _mountLabel, ...linux } = { ...spec.linux, ...(Object.keys(sysctl).length > 0 ? { sysctl } : {}) };
  linux.cgroupsPath = layout.cgroupsPath;
  if (linux.resources) linux.resources = guestResources(linux.resources);
  return { ...rest, ...(spec.process ? { process: proc as Spec['process'] } : {}), linux };
}

/** The guest path of a host path inside the share (which the guest mounts at `guestMount`). */
export function guestPathIn(share: { hostDir: string; guestMount: string }, hostPath: string): string {
  const relative = path.relative(share.hostDir, hostPath);
  if (relative.startsWith('..') || path.isAbsolute(relative)) throw internal(`${hostPath} is not inside the share ${share.hostDir}`);
  return path.posix.join(share.guestMount, relative);
}
