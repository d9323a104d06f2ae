import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, open, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Code } from '../../src/base/errors.js';
import { run } from '../../src/devenv/exec.js';
import { existingCgroupDirs, removeCgroup } from '../../src/linux/cgroups.js';
import { mountsUnder } from '../../src/linux/mountinfo.js';
import { pinPodNamespaces, unpinPodNamespaces } from '../../src/linux/namespaces.js';
import { Reaper } from '../../src/linux/reaper.js';
import { stageLog } from '../../src/devenv/stage-log.js';
import { type ExitSource, ReaperExitSource } from '../../src/oci/exit-source.js';
import { OciRuntime } from '../../src/oci/runtime.js';
import { withNamespacePath, type Process, type Spec } from '../../src/oci/spec.js';

const skip = process.getuid?.() !== 0 && 'needs root';
const capabilities = ['CAP_KILL', 'CAP_NET_BIND_SERVICE', 'CAP_AUDIT_WRITE'];

function containerProcess(args: string[]): Process {
  return {
    terminal: false,
    user: { uid: 0, gid: 0 },
    args,
    env: ['PATH=/bin'],
    cwd: '/',
    capabilities: { bounding: capabilities, effective: capabilities, permitted: capabilities },
    noNewPrivileges: true,
  };
}

function containerSpec(args: string[], cgroupsPath: string): Spec {
  return {
    ociVersion: '1.0.2',
    process: containerProcess(args),
    root: { path: 'rootfs', readonly: true },
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }],
      cgroupsPath,
      maskedPaths: ['/proc/kcore', '/proc/keys'],
      readonlyPaths: ['/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('containers through runc', { skip }, () => {
  let base: string;
  let runtime: OciRuntime;
  const reaper = new Reaper();
  const cgroupParent = `/kuasar-e2e-${process.pid}`;

  /** A bundle whose rootfs is busybox and a few applet links. */
  async function bundle(id: string, spec: Spec): Promise<string> {
    const dir = path.join(base, 'bundles', id);
    await mkdir(path.join(dir, 'rootfs', 'bin'), { recursive: true });
    for (const sub of ['proc', 'dev', 'tmp']) await mkdir(path.join(dir, 'rootfs', sub));
    await copyFile('/bin/busybox', path.join(dir, 'rootfs', 'bin', 'busybox'));
    for (const applet of ['sh', 'sleep', 'hostname', 'cat']) await symlink('busybox', path.join(dir, 'rootfs', 'bin', applet));
    await writeFile(path.join(dir, 'config.json'), JSON.stringify(spec));
    return dir;
  }

  /** runc's own view of container `id` (`runc state`, apart from OciRuntime); undefined when runc knows no such container. */
  async function runcState(id: string): Promise<{ status: string; pid: number } | undefined> {
    try {
      return JSON.parse(await run('runc', ['--root', runtime.root, 'state', id])) as { status: string; pid: number };
    } catch (err) {
      if (/container does not exist/.test((err as Error).message)) return undefined;
      throw err;
    }
  }

  /** Asserts that nothing of container `id` is left: runc state, mounts, cgroups, processes. */
  async function assertGone(id: string, bundleDir: string, pids: number[]): Promise<void> {
    assert.equal(await runcState(id), undefined, 'runc knows the container no more');
    assert.ok(!(await readdir(runtime.root)).includes(id), 'runc state dir entry removed');
    assert.deepEqual(await mountsUnder(bundleDir), []);
    assert.deepEqual(await existingCgroupDirs(`${cgroupParent}/${id}`), []);
    for (const pid of pids) assert.ok(!isAlive(pid), `process ${pid} is gone`);
  }

  before(async () => {
    base = await mkdtemp(path.join(tmpdir(), 'kuasar-oci-e2e-'));
    runtime = new OciRuntime({ root: path.join(base, 'runc') });
    reaper.start();
  });
  after(async () => {
    reaper.stop();
    await removeCgroup(cgroupParent).catch(() => undefined);
    await rm(base, { recursive: true, force: true });
  });

  it('reports the runtime version', async () => {
    const version = await runtime.version();
    assert.equal(version.name, 'runc');
    assert.match(version.version, /^\d+\.\d+/);
  });

  it('runs a container in pinned pod namespaces, reaps its exit status 3, and deletes every trace', async () => {
    const id = 'exit3';
    const pod = await pinPodNamespaces(path.join(base, 'pod', 'ns'), { ipc: true, uts: true, hostname: 'e2e-pod' });
    let spec = containerSpec(['sh', '-c', 'echo hello from the container; hostname; exit 3'], `${cgroupParent}/${id}`);
    spec = withNamespacePath(withNamespacePath(spec, 'ipc', pod.ipcPath!), 'uts', pod.utsPath!);
    const dir = await bundle(id, spec);

    const stdout = await open(path.join(base, `${id}.out`), 'w');
    const pid = await runtime.create(id, dir, { pidFile: path.join(dir, 'init.pid'), stdio: ['ignore', stdout.fd, stdout.fd] });
    await stdout.close();
    const exited = reaper.watch(pid);
    const created = await runcState(id);
    assert.deepEqual({ status: created?.status, pid: created?.pid }, { status: 'created', pid });
    assert.ok((await existingCgroupDirs(`${cgroupParent}/${id}`)).length > 0, 'runc made the cgroups');

    await runtime.start(id);
    const exit = await exited;
    assert.equal(exit.exitStatus, 3);
    assert.equal(await readFile(path.join(base, `${id}.out`), 'utf8'), 'hello from the container\ne2e-pod\n');
    assert.equal((await runcState(id))?.status, 'stopped');

    await runtime.delete(id);
    await assertGone(id, dir, [pid]);
    await unpinPodNamespaces(path.join(base, 'pod', 'ns'));
    assert.deepEqual(await mountsUnder(base), []);
  });

  it('execs into a running container, lists its processes, kills and force-deletes it', async () => {
    const id = 'sleeper';
    const dir = await bundle(id, containerSpec(['sleep', '30'], `${cgroupParent}/${id}`));
    const pid = await runtime.create(id, dir, { pidFile: path.join(dir, 'init.pid') });
    const initExit = reaper.watch(pid);
    await runtime.start(id);
    const running = await runcState(id);
    assert.deepEqual({ status: running?.status, pid: running?.pid }, { status: 'running', pid });
    assert.deepEqual(await runtime.ps(id), [pid]);

    await assert.rejects(runtime.create(id, dir, { pidFile: path.join(dir, 'again.pid') }), { code: Code.AlreadyExists });
    await assert.rejects(runtime.start(id), { code: Code.FailedPrecondition, message: /^runc start sleeper: / });

    const processFile = path.join(dir, 'exec.json');
    await writeFile(processFile, JSON.stringify(containerProcess(['sh', '-c', 'sleep 0.2; exit 4'])));
    const execPid = await runtime.exec(id, { pidFile: path.join(dir, 'exec.pid'), processFile });
    const execExit = reaper.watch(execPid);
    assert.ok((await runtime.ps(id)).includes(execPid));
    assert.equal((await execExit).exitStatus, 4);

    await runtime.kill(id, 'SIGKILL');
    const exit = await initExit;
    assert.equal(exit.exitStatus, 128 + 9);
    await assert.rejects(runtime.kill(id, 'SIGTERM'), { code: Code.NotFound });

    await runtime.delete(id, { force: true });
    await assertGone(id, dir, [pid, execPid]);
  });

  it('reads a container’s state and stats, logs each command’s stage, and tells its exit through the reaper’s ExitSource', async () => {
    const id = 'observed';
    const dir = await bundle(id, containerSpec(['sleep', '30'], `${cgroupParent}/${id}`));
    const { log, stages } = stageLog();
    const exits: ExitSource = new ReaperExitSource(reaper);
    const pid = await runtime.create(id, dir, { pidFile: path.join(dir, 'init.pid'), log });
    const exited = exits.watch(pid, id);
    assert.deepEqual(await runtime.state(id), { id, status: 'created', pid, bundle: dir, annotations: {} });
    await runtime.start(id, { log });
    assert.equal((await runtime.state(id)).status, 'running');

    const stats = await runtime.stats(id);
    assert.equal(stats.pids.current, 1n, 'sleep is the one process');
    assert.ok(stats.memory.usage.usage > 0n, `memory in use: ${stats.memory.usage.usage}`);
    assert.ok(stats.cpu.usage.total > 0n, `cpu time spent (runc's init runs in the cgroup): ${stats.cpu.usage.total}`);

    await runtime.pause(id, { log });
    assert.equal((await runtime.state(id)).status, 'paused');
    await runtime.resume(id, { log });
    await runtime.kill(id, 'SIGKILL', { log });
    assert.equal((await exited).exitStatus, 128 + 9);
    assert.equal((await runtime.state(id)).status, 'stopped');
    await runtime.delete(id, { log });
    await assert.rejects(runtime.state(id), { code: Code.NotFound, message: 'runc state observed: container does not exist' });
    assert.deepEqual(stages(), ['oci.create', 'oci.start', 'oci.pause', 'oci.resume', 'oci.kill', 'oci.delete']);
    await assertGone(id, dir, [pid]);
  });

  it('force-deletes a container that is still running', async () => {
    const id = 'running';
    const dir = await bundle(id, containerSpec(['sleep', '30'], `${cgroupParent}/${id}`));
    const pid = await runtime.create(id, dir, { pidFile: path.join(dir, 'init.pid') });
    const exited = reaper.watch(pid);
    await runtime.start(id);
    await runtime.delete(id, { force: true });
    assert.equal((await exited).exitStatus, 128 + 9);
    await assertGone(id, dir, [pid]);
  });

  it('reports a container that does not exist as NotFound', async () => {
    await assert.rejects(runtime.kill('nope', 'SIGTERM'), { code: Code.NotFound, message: 'runc kill nope: container does not exist' });
    await assert.rejects(runtime.delete('nope'), { code: Code.NotFound });
  });
});
