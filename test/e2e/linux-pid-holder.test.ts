import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { detectCgroupLayout, existingCgroupDirs, removeCgroup } from '../../src/linux/cgroups.js';
import { makeCgroup } from '../../src/devenv/cgroups.js';
import { pinPodNamespaces, unpinPodNamespaces, type PinnedNamespaces } from '../../src/linux/namespaces.js';
import { isHolderRunning, startPidNamespaceHolder, stopLostHolders, stopPidNamespaceHolder } from '../../src/linux/pid-holder.js';

const skip = process.getuid?.() !== 0 && 'needs root';

describe('PID namespace holders whose record was lost', { skip }, () => {
  const parent = `/kuasar-test-holders-${process.pid}`;
  let base: string;
  let pinned: PinnedNamespaces;
  before(async () => {
    base = await mkdtemp(path.join(tmpdir(), 'kuasar-holders-'));
    pinned = await pinPodNamespaces(path.join(base, 'ns'), { ipc: true, uts: true, hostname: 'lost-holder' });
    await makeCgroup(parent);
  });
  after(async () => {
    await unpinPodNamespaces(path.join(base, 'ns'));
    await rm(base, { recursive: true, force: true });
    await removeCgroup(parent);
  });

  const match = (cgroupName: string) => ({ namespaceFiles: [pinned.ipcPath!, pinned.utsPath!], cgroupName });

  it('stops a holder found by its namespaces and removes its cgroup made before the holder was moved in', async () => {
    const cgroupName = 'kuasar-pidns-half-joined';
    const cgroupsPath = `${parent}/${cgroupName}`;
    const holder = await startPidNamespaceHolder({ ipc: pinned.ipcPath!, uts: pinned.utsPath! });
    // What a daemon killed inside joinCgroup leaves: the cgroup made everywhere, the holder in none.
    for (const h of (await detectCgroupLayout()).hierarchies) await mkdir(path.join(h.mountPoint, cgroupsPath), { recursive: true });
    assert.notEqual((await existingCgroupDirs(cgroupsPath)).length, 0);

    const stopped = await stopLostHolders(match(cgroupName), cgroupsPath);
    assert.deepEqual(
      stopped.map((h) => h.pid),
      [holder.pid],
    );
    assert.equal(isHolderRunning(holder), false);
    assert.deepEqual(await existingCgroupDirs(cgroupsPath), []);
  });

  it('stops a holder found by its cgroup alone, and finds nothing the second time', async () => {
    const cgroupName = 'kuasar-pidns-by-cgroup';
    const cgroupsPath = `${parent}/${cgroupName}`;
    const holder = await startPidNamespaceHolder({}, cgroupsPath);
    try {
      assert.equal(holder.cgroupsPath, cgroupsPath);
      const stopped = await stopLostHolders(match(cgroupName), cgroupsPath);
      assert.deepEqual(
        stopped.map((h) => h.pid),
        [holder.pid],
      );
      assert.equal(isHolderRunning(holder), false);
      assert.deepEqual(await existingCgroupDirs(cgroupsPath), []);
      assert.deepEqual(await stopLostHolders(match(cgroupName), cgroupsPath), []);
    } finally {
      await stopPidNamespaceHolder(holder);
    }
  });
});
