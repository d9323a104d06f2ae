// What the admin socket shows of a sandbox or a container (admin-api.ts): read from the records
// the engine holds in memory, never under a lock an RPC takes; `inspect` adds what the host says
// of the sandbox's directory (its sockets, the mounts below it), read when it is asked.
import type { Dirent } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ContainerRecord, ExecRecord } from '../base/model.js';
import type { Sandbox } from '../engine/sandbox.js';
import { type MountInfo, mountsUnder, readMountInfo } from '../linux/mountinfo.js';
import type { ContainerDetails, ContainerView, MountView, ProcessView, SandboxDetails, SandboxSummary } from './admin-api.js';

const processView = (p: ContainerRecord | ExecRecord): ProcessView => ({ id: p.id, status: p.status, pid: p.pid, exit: p.exit });

const containerView = (c: ContainerRecord): ContainerView => ({ ...processView(c), execs: c.execs.map(processView) });

export function sandboxSummary(sandbox: Sandbox): SandboxSummary {
  const { record } = sandbox;
  return {
    kind: record.kind,
    id: record.id,
    pod: { namespace: record.pod.namespace, name: record.pod.name, uid: record.pod.uid },
    state: record.phase,
    reason: sandbox.problem,
    pid: record.pid,
    createdAt: record.createdAt,
    startedAt: record.startedAt,
    containers: record.containers.map(containerView),
  };
}

const mountView = (m: MountInfo): MountView => ({ mountPoint: m.mountPoint, fsType: m.fsType, source: m.source, options: m.options });

/** The unix sockets directly in `dir`; none once it is gone (a sandbox shut down meanwhile). */
async function socketsIn(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch((): Dirent[] => []);
  return entries
    .filter((e) => e.isSocket())
    .map((e) => join(dir, e.name))
    .sort();
}

export async function sandboxDetails(sandbox: Sandbox): Promise<SandboxDetails> {
  const { record } = sandbox;
  const [sockets, mounts] = await Promise.all([socketsIn(sandbox.dir), mountsUnder(sandbox.dir)]);
  return {
    type: 'sandbox',
    ...sandboxSummary(sandbox),
    namespace: record.namespace,
    spec: record.pod,
    exit: record.exit,
    netnsPath: record.netnsPath,
    dir: sandbox.dir,
    taskAddress: record.taskAddress,
    sockets,
    mounts: mounts.map(mountView),
    namespaces: sandbox.handle?.namespaces() ?? {},
    kindState: record.kindState,
  };
}

/**
 * Which mounts a container holds: those below its bundle (containerd's, where runc mounts its
 * rootfs) and those below its sandbox's directory in a directory of its id (a kind's own: the
 * vmm kind's share, the OCI kinds' container directories).
 */
export async function containerDetails(sandbox: Sandbox, container: ContainerRecord): Promise<ContainerDetails> {
  const table = await readMountInfo();
  const [inBundle, inSandbox] = await Promise.all([mountsUnder(container.bundle, table), mountsUnder(sandbox.dir, table)]);
  const ownDir = `/${container.id}/`;
  const mounts = [...inBundle, ...inSandbox.filter((m) => `${m.mountPoint}/`.includes(ownDir))];
  const unique = [...new Map(mounts.map((m) => [m.id, m])).values()];
  return {
    type: 'container',
    ...containerView(container),
    kind: sandbox.record.kind,
    sandbox: sandbox.id,
    bundle: container.bundle,
    rootfs: container.rootfs,
    stdio: container.stdio,
    mounts: unique.map(mountView),
    kindState: container.kindState,
  };
}
