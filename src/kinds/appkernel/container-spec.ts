// How a container's OCI spec (as CRI wrote it) is bent to run inside its pod's gVisor sandbox:
// runsc places it by the CRI annotations (a container of the sandbox named by its root
// container's id), and it sees the pod's /etc files, which the sandbox's gofer serves.
import type { podDirPaths } from '../../oci-kind/pod-dir.js';
import { podEtcMounts, withPodMounts } from '../../oci-kind/pod-mounts.js';
import { withRootPath, type Spec } from '../../oci/spec.js';
import { CONTAINER_TYPE_ANNOTATION, SANDBOX_ID_ANNOTATION } from './sandbox-spec.js';

export interface SandboxLayout {
  /** The runsc id of the pod's root container. */
  runscSandboxId: string;
  files: ReturnType<typeof podDirPaths>;
}

export function sandboxContainerSpec(cri: Spec, rootPath: string, layout: SandboxLayout): Spec {
  let spec = withRootPath(cri, rootPath);
  spec = withPodMounts(spec, podEtcMounts(cri, layout.files));
  // The namespaces CRI names (the sandbox process's, on the host) are not the pod's: inside the
  // sandbox runsc gives each container the pod's own, the way its CRI integration expects.
  const { hostname: _kernelKeepsIt, ...rest } = spec;
  return {
    ...rest,
    annotations: { ...spec.annotations, [CONTAINER_TYPE_ANNOTATION]: 'container', [SANDBOX_ID_ANNOTATION]: layout.runscSandboxId },
  };
}
