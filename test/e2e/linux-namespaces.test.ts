import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readlink, rm, stat } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

import { Code, RuntimeError } from '../../src/base/errors.js';
import { mountsUnder, propagationOf } from '../../src/linux/mountinfo.js';
import { pinPodNamespaces, unpinPodNamespaces } from '../../src/linux/namespaces.js';

const run = promisify(execFile);
const skip = process.getuid?.() !== 0 && 'needs root';

/** Pids of the processes that are members of the namespace with this inode. */
async function membersOf(type: 'ipc' | 'uts', inode: number): Promise<number[]> {
  const members: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const link = await readlink(`/proc/${entry}/ns/${type}`).catch(() => '');
    if (link === `${type}:[${inode}]`) members.push(Number(entry));
  }
  return members;
}

/** The IPC and UTS namespaces of every thread of this process, as `type:[inode]` links. */
async function threadNamespaces(): Promise<string[]> {
  const links: string[] = [];
  for (const task of await readdir('/proc/self/task')) {
    for (const type of ['ipc', 'uts']) links.push(await readlink(`/proc/self/task/${task}/ns/${type}`));
  }
  return links;
}

describe('pod namespaces pinned by bind mounts', { skip }, () => {
  let base: string;
  let hostIpc: string;
  let hostUts: string;
  let hostName: string;
  before(async () => {
    base = await mkdtemp(path.join(tmpdir(), 'kuasar-ns-'));
    hostIpc = await readlink('/proc/self/ns/ipc');
    hostUts = await readlink('/proc/self/ns/uts');
    hostName = hostname();
  });

  after(async () => {
    await rm(base, { recursive: true, force: true });
  });

  /** Every thread of this process (the main one pins) is in the host's namespaces. */
  async function assertThreadsAtHome(): Promise<void> {
    const links = await threadNamespaces();
    assert.deepEqual(
      links.filter((link) => link !== hostIpc && link !== hostUts),
      [],
    );
    assert.equal(hostname(), hostName);
  }

  it('pins IPC and UTS with the hostname set, leaves no process, and unpins cleanly', async () => {
    const dir = path.join(base, 'pod1');
    const pinned = await pinPodNamespaces(dir, { ipc: true, uts: true, hostname: 'pod-one' });
    assert.equal(pinned.ipcPath, path.join(dir, 'ipc'));
    assert.equal(pinned.utsPath, path.join(dir, 'uts'));

    const { stdout } = await run('nsenter', [`--uts=${pinned.utsPath}`, 'hostname']);
    assert.equal(stdout.trim(), 'pod-one');

    const utsInode = (await stat(pinned.utsPath!)).ino;
    const ipcInode = (await stat(pinned.ipcPath!)).ino;
    assert.notEqual(utsInode, (await stat('/proc/self/ns/uts')).ino);
    assert.notEqual(ipcInode, (await stat('/proc/self/ns/ipc')).ino);
    assert.deepEqual(await membersOf('uts', utsInode), [], 'no process holds the UTS namespace');
    assert.deepEqual(await membersOf('ipc', ipcInode), [], 'no process holds the IPC namespace');

    const mounts = await mountsUnder(dir);
    assert.ok(mounts.some((m) => m.mountPoint === pinned.utsPath && m.fsType === 'nsfs'));
    assert.ok(mounts.some((m) => m.mountPoint === pinned.ipcPath && m.fsType === 'nsfs'));

    await assert.rejects(pinPodNamespaces(dir, { ipc: true, uts: false }), (err: unknown) => {
      return err instanceof RuntimeError && err.code === Code.AlreadyExists;
    });

    await assertThreadsAtHome();

    await unpinPodNamespaces(dir);
    assert.deepEqual(await mountsUnder(base), []);
    await assert.rejects(stat(dir), { code: 'ENOENT' });
    await unpinPodNamespaces(dir); // already gone: no error
  });

  it('pins many pods at once, each in namespaces of its own', async () => {
    const dirs = Array.from({ length: 20 }, (_, i) => path.join(base, `burst${i}`));
    await Promise.all(dirs.map((dir, i) => pinPodNamespaces(dir, { ipc: true, uts: true, hostname: `burst-${i}` })));
    const inodes = new Set<number>();
    for (const [i, dir] of dirs.entries()) {
      const { stdout } = await run('nsenter', [`--uts=${path.join(dir, 'uts')}`, 'hostname']);
      assert.equal(stdout.trim(), `burst-${i}`);
      inodes.add((await stat(path.join(dir, 'uts'))).ino).add((await stat(path.join(dir, 'ipc'))).ino);
    }
    assert.equal(inodes.size, 2 * dirs.length);
    await assertThreadsAtHome();
    await Promise.all(dirs.map((dir) => unpinPodNamespaces(dir)));
    assert.deepEqual(await mountsUnder(base), []);
  });

  it('reuses a directory and pin files left by a crash', async () => {
    const dir = path.join(base, 'leftover');
    await mkdir(dir);
    await run('touch', [path.join(dir, 'ipc'), path.join(dir, 'uts')]);
    await pinPodNamespaces(dir, { ipc: true, uts: true, hostname: 'left-over' });
    const { stdout } = await run('nsenter', [`--uts=${path.join(dir, 'uts')}`, 'hostname']);
    assert.equal(stdout.trim(), 'left-over');
    const mounts = await mountsUnder(dir);
    assert.ok(mounts.some((m) => m.mountPoint === path.join(dir, 'ipc') && m.fsType === 'nsfs'));
    await assertThreadsAtHome();
    await unpinPodNamespaces(dir);
    assert.deepEqual(await mountsUnder(base), []);
  });

  it('pins only what is asked, and uses the host UTS otherwise', async () => {
    const dir = path.join(base, 'pod2');
    const pinned = await pinPodNamespaces(dir, { ipc: true, uts: false });
    assert.deepEqual(Object.keys(pinned), ['ipcPath']);
    await unpinPodNamespaces(dir);
    assert.deepEqual(await mountsUnder(base), []);
  });

  it('makes its directory a private mount when it sits on a shared one', async () => {
    const shared = path.join(base, 'shared');
    await run('mkdir', [shared]);
    await run('mount', ['--bind', shared, shared]);
    await run('mount', ['--make-shared', shared]);
    try {
      const dir = path.join(shared, 'pod');
      await pinPodNamespaces(dir, { ipc: false, uts: true, hostname: 'pod-two' });
      const own = (await mountsUnder(dir)).find((m) => m.mountPoint === dir);
      assert.ok(own, 'the directory is a mount point of its own');
      assert.equal(propagationOf(own), 'private');
      await unpinPodNamespaces(dir);
      assert.deepEqual(await mountsUnder(dir), []);
    } finally {
      await run('umount', [shared]);
    }
  });

  it('rejects a hostname the kernel cannot take before touching anything', async () => {
    const dir = path.join(base, 'pod3');
    await assert.rejects(pinPodNamespaces(dir, { ipc: false, uts: true, hostname: 'x'.repeat(65) }), /is 65 bytes long/);
    await assert.rejects(stat(dir), { code: 'ENOENT' });
  });
});
