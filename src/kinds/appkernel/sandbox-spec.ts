// The spec of a gVisor sandbox's root container. runsc starts the pod's sandbox (its sentry and
// its gofer) with this container; every container of the pod then joins it. Nothing of an image
// is needed: it runs kuasar's own idle program from a read-only directory holding only that
// program, where a runc-based pod would run a pause image.
import type { PodSpec } from '../../base/model.js';
import type { LinuxNamespace, Spec } from '../../oci/spec.js';

/** The annotations runsc (like every CRI-aware runtime) reads to place a container in a pod. */
export const CONTAINER_TYPE_ANNOTATION = 'io.kubernetes.cri.container-type';
export const SANDBOX_ID_ANNOTATION = 'io.kubernetes.cri.sandbox-id';

/** The idle program's name inside its root directory. */
export const IDLE_PROGRAM = 'kuasar-idle';

/** The user the idle program runs as: nobody, as a pause container does. */
const IDLE_USER = 65_534;

export interface SandboxSpecInput {
  /** The runsc id of the root container (also the sandbox's id for runsc). */
  runscId: string;
  pod: PodSpec;
  /** The pod's hostname: its own, or the node's when CRI gives none. */
  hostname: string;
  /** The directory holding only the idle program. */
  idleRoot: string;
  /** The pod's network namespace (CNI's); ignored for a pod on the node's network. */
  netnsPath: string;
  /** The sandbox's host cgroup (runsc-sandbox and runsc-gofer go there). */
  cgroupsPath: string;
}

export function sandboxSpec(input: SandboxSpecInput): Spec {
  const { pod } = input;
  // gVisor gives the sandbox its own kernel: every namespace is new inside it. The network one
  // names where runsc finds the pod's interfaces (the CNI netns) to serve them in its netstack.
  const namespaces: LinuxNamespace[] = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (!pod.hostNetwork) namespaces.push({ type: 'network', path: input.netnsPath });
  return {
    ociVersion: '1.2.0',
    process: {
      terminal: false,
      user: { uid: IDLE_USER, gid: IDLE_USER },
      args: [`/${IDLE_PROGRAM}`],
      env: ['PATH=/'],
      cwd: '/',
      noNewPrivileges: true,
    },
    root: { path: input.idleRoot, readonly: true },
    hostname: input.hostname,
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    ],
    annotations: { [CONTAINER_TYPE_ANNOTATION]: 'sandbox', [SANDBOX_ID_ANNOTATION]: input.runscId },
    linux: {
      namespaces,
      cgroupsPath: input.cgroupsPath,
      ...(Object.keys(pod.sysctls).length > 0 ? { sysctl: { ...pod.sysctls } } : {}),
    },
  };
}
