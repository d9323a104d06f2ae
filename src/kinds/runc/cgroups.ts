// Where each container's cgroup is, for its stats and its OOM count: the linux.cgroupsPath of
// the spec written for runc (saved in the container's state), on the host's cgroup layout.
import { detectCgroupLayout, type CgroupLayout } from '../../linux/cgroups.js';
import type { Spec } from '../../oci/spec.js';

let layout: Promise<CgroupLayout> | undefined;

/** The host's cgroup layout, read once: hierarchies are mounted at boot, not while we run. */
export function hostCgroupLayout(): Promise<CgroupLayout> {
  layout ??= detectCgroupLayout().catch((err: unknown) => {
    layout = undefined;
    throw err;
  });
  return layout;
}

/** The spec's cgroups path; without one, runc's default: the container id below runc's own cgroup. */
export function cgroupsPathOf(spec: Spec, containerId: string): string {
  const path = spec.linux?.['cgroupsPath'];
  return typeof path === 'string' && path !== '' ? path : containerId;
}
