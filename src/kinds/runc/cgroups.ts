// Where each container's cgroup is, for its stats and its OOM count: the linux.cgroupsPath of
// the spec written for runc. Remembered per container record; after a daemon restart, read
// again from that spec in the container's directory.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContainerRecord } from '../../base/model.js';
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

export class ContainerCgroups {
  private readonly paths = new WeakMap<ContainerRecord, string>();

  remember(container: ContainerRecord, spec: Spec): void {
    this.paths.set(container, cgroupsPathOf(spec, container.id));
  }

  /** The container's cgroups path; `bundleDir` holds the config.json given to runc. */
  async pathOf(container: ContainerRecord, bundleDir: string): Promise<string> {
    let path = this.paths.get(container);
    if (path === undefined) {
      const spec = JSON.parse(await readFile(join(bundleDir, 'config.json'), 'utf8')) as Spec;
      path = cgroupsPathOf(spec, container.id);
      this.paths.set(container, path);
    }
    return path;
  }
}
