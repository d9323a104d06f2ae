// The sandbox's shared directory: the one directory of the host the pod's VM sees (over 9p), where
// kuasard puts what the guest needs of each container: its rootfs (containerd's snapshot, mounted
// here on the host) and the sources of its bind mounts (each bound here, read-only where the
// mount is). The pod's /etc files live here too. Nothing else of the host reaches the guest.
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { ContainerRecord, PodSpec } from '../../base/model.js';
import { timed } from '../../base/stages.js';
import { mountAll, mountOne, unmountRecursive } from '../../linux/mount.js';
import { containerDirs } from '../../oci-kind/container.js';
import { podDirPaths, preparePodDir } from '../../oci-kind/pod-dir.js';
import { resolveRootfs } from '../../oci/bundle.js';
import { isBindMount, type Spec } from '../../oci/spec.js';
import { emptyDirName, GUEST_EMPTY_DIR_ROOT, guestPathIn } from './guest-spec.js';

/** Where the guest mounts the share, and the 9p tag it finds it by. */
export const GUEST_SHARE = { mountPoint: '/run/kuasar/shared', tag: 'kuasar' } as const;

/** What a container's host-side pieces look like from the guest. */
export interface ExposedContainer {
  rootfs: string;
  bindSources: (string | undefined)[];
  /** The guest directories of the pod's emptyDir volumes the container binds. */
  emptyDirs: string[];
}

export class SandboxShare {
  readonly files: ReturnType<typeof podDirPaths>;

  constructor(readonly hostDir: string) {
    this.files = podDirPaths(hostDir);
  }

  /** The share with the pod's /etc files; made at Controller Create. */
  async prepare(pod: PodSpec): Promise<void> {
    await mkdir(this.hostDir, { recursive: true, mode: 0o700 });
    await preparePodDir(this.hostDir, pod);
  }

  /** The guest's view of `hostPath`, which must lie inside the share. */
  guestPath(hostPath: string): string {
    return guestPathIn({ hostDir: this.hostDir, guestMount: GUEST_SHARE.mountPoint }, hostPath);
  }

  /** The pod's /etc files as the guest sees them. */
  guestFiles(): ReturnType<typeof podDirPaths> {
    return podDirPaths(GUEST_SHARE.mountPoint);
  }

  /**
   * Puts the container's rootfs and bind sources into the share. On failure whatever was mounted
   * stays for `release`, which the caller runs.
   */
  async expose(record: Readonly<ContainerRecord>, cri: Spec, podUid: string, log: Logger): Promise<ExposedContainer> {
    const dirs = containerDirs(this.files.containersDir, record.id);
    await mkdir(dirs.rootfs, { recursive: true, mode: 0o700 });
    if (record.rootfs.length > 0) {
      await timed(log, 'vmm.mount-rootfs', () => mountAll(record.rootfs, dirs.rootfs));
    } else {
      // containerd prepared the rootfs itself (root.path in the bundle): the share binds it.
      await mountOne({ type: 'bind', source: resolveRootfs(record.bundle, cri, 0), options: ['rbind'] }, dirs.rootfs);
    }
    const bindSources: (string | undefined)[] = [];
    const emptyDirs: string[] = [];
    for (const [index, mount] of (cri.mounts ?? []).entries()) {
      if (!isBindMount(mount)) {
        bindSources.push(undefined);
        continue;
      }
      const volume = emptyDirName(mount.source ?? '', podUid);
      if (volume) {
        const dir = `${GUEST_EMPTY_DIR_ROOT}/${volume}`;
        bindSources.push(dir);
        emptyDirs.push(dir);
        continue;
      }
      const target = join(dirs.dir, 'mounts', String(index));
      await bindInto(mount.source ?? '', target, (mount.options ?? []).includes('ro'));
      bindSources.push(this.guestPath(target));
    }
    return { rootfs: this.guestPath(dirs.rootfs), bindSources, emptyDirs };
  }

  /** Takes the container's pieces out of the share. Idempotent. */
  async release(containerId: string): Promise<void> {
    const { dir } = containerDirs(this.files.containersDir, containerId);
    await unmountRecursive(dir);
    await rm(dir, { recursive: true, force: true });
  }

  /** Takes everything out of the share and removes it. Idempotent. */
  async destroy(): Promise<void> {
    await unmountRecursive(this.hostDir);
    await rm(this.hostDir, { recursive: true, force: true });
  }
}

/** Binds the host path `source` (a file or a directory) at `target`, read-only when asked. */
async function bindInto(source: string, target: string, readonly: boolean): Promise<void> {
  const isDir = (await stat(source)).isDirectory();
  await mkdir(isDir ? target : join(target, '..'), { recursive: true });
  if (!isDir) await writeFile(target, '', { flag: 'a' });
  await mountOne({ type: 'bind', source, options: readonly ? ['rbind', 'ro'] : ['rbind'] }, target);
}
