// The directory of a pod whose containers an OCI runtime CLI runs: the pod's own /etc files
// (hostname, hosts, resolv.conf) that every container mounts, and one directory per container.
// Shared by the kinds that keep their pods this way (runc, appkernel).
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { isValidId } from '../base/ids.js';
import type { PodSpec } from '../base/model.js';
import { podFiles, type HostFacts } from '../base/pod-files.js';
import type { SandboxContext } from '../kind-api/kind.js';
import { unmountRecursive } from '../linux/mount.js';
import type { OciRuntime } from '../oci/runtime.js';
import { containerDirs, isGone } from './container.js';

/** Paths of a pod's shared pieces inside its sandbox directory. */
export function podDirPaths(dir: string) {
  return {
    etcDir: join(dir, 'etc'),
    hostnameFile: join(dir, 'etc', 'hostname'),
    hostsFile: join(dir, 'etc', 'hosts'),
    resolvConfFile: join(dir, 'etc', 'resolv.conf'),
    containersDir: join(dir, 'containers'),
  };
}

/** Writes the pod's /etc files (made as containerd makes them) and its containers' directory. */
export async function preparePodDir(dir: string, pod: PodSpec): Promise<void> {
  const paths = podDirPaths(dir);
  const files = podFiles(pod, await hostFacts());
  await mkdir(paths.etcDir, { recursive: true });
  await writeFile(paths.hostnameFile, files.hostname);
  await writeFile(paths.hostsFile, files.hosts);
  await writeFile(paths.resolvConfFile, files.resolvConf);
  await mkdir(paths.containersDir);
}

async function hostFacts(): Promise<HostFacts> {
  const read = (path: string) => readFile(path, 'utf8').catch(() => '');
  return { hostname: osHostname(), hosts: await read('/etc/hosts'), resolvConf: await read('/etc/resolv.conf') };
}

/**
 * Container directories with no record: the daemon died inside a Task Create, after the runtime
 * may have created the container and before the record was saved (containerd was told nothing),
 * or the container's state could not be believed. Each is deleted from the runtime and removed.
 */
export async function deleteUnrecordedContainers(runtime: OciRuntime, context: SandboxContext): Promise<void> {
  const { containersDir } = podDirPaths(context.dir);
  const recorded = new Set(context.record.containers.map((c) => c.id));
  const entries = await readdir(containersDir).catch(() => [] as string[]);
  for (const id of entries.filter((name) => isValidId(name) && !recorded.has(name))) {
    context.log.warn({ container: id }, 'deleting a container the state file did not record');
    await runtime.delete(id, { force: true }).catch((err: unknown) => {
      if (!isGone(err)) throw err;
    });
    const { dir } = containerDirs(containersDir, id);
    await unmountRecursive(dir);
    await rm(dir, { recursive: true, force: true });
  }
}
