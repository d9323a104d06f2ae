import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';

import { detectCgroupLayout, existingCgroupDirs, removeCgroup } from '../../src/linux/cgroups.js';

const skip = process.getuid?.() !== 0 && 'needs root';

describe('cgroup removal', { skip }, () => {
  it('removes a cgroup with nested ones in every hierarchy, and names the processes that hold it', async () => {
    const cgroupsPath = `/kuasar-test-${process.pid}/c1`;
    const layout = await detectCgroupLayout();
    const memory = layout.hierarchies.find((h) => h.controllers.includes('memory')) ?? layout.hierarchies[0]!;
    for (const h of layout.hierarchies) await mkdir(path.join(h.mountPoint, cgroupsPath, 'nested'), { recursive: true });
    assert.equal((await existingCgroupDirs(cgroupsPath)).length, layout.hierarchies.length);

    const holder = spawn('sleep', ['30']);
    const exited = new Promise((resolve) => holder.on('exit', resolve));
    await writeFile(path.join(memory.mountPoint, cgroupsPath, 'nested', 'cgroup.procs'), String(holder.pid));
    await assert.rejects(removeCgroup(cgroupsPath, { busyTimeoutMs: 100 }), new RegExp(`processes still in it: ${holder.pid}`));

    holder.kill('SIGKILL');
    await exited;
    await removeCgroup(cgroupsPath);
    assert.deepEqual(await existingCgroupDirs(cgroupsPath), []);
    await removeCgroup(cgroupsPath); // nothing left: no error
    await removeCgroup(`/kuasar-test-${process.pid}`);
  });
});
