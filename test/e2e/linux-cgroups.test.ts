import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';

import { CgroupExecError, execFileInCgroup } from '../../src/linux/cgroup-exec.js';
import { detectCgroupLayout, existingCgroupDirs, parseProcCgroup, removeCgroup } from '../../src/linux/cgroups.js';

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

describe('a program run in a cgroup', { skip }, () => {
  it('is in the cgroup from its first instruction, in every hierarchy; its output, its failures and a timeout are told', async () => {
    // At the top of each hierarchy: a cgroup is made only where its parent exists.
    const cgroupsPath = `/kuasar-test-exec-${process.pid}`;
    try {
      // The shell's own /proc/self/cgroup, read after the exec: the program started there.
      const { stdout } = await execFileInCgroup('/bin/cat', ['/proc/self/cgroup'], cgroupsPath, { timeoutMs: 10_000 });
      const lines = parseProcCgroup(stdout);
      assert.ok(lines.length > 0);
      for (const line of lines) {
        assert.equal(line.path, cgroupsPath, `hierarchy ${line.hierarchyId} (${line.controllers.join(',')})`);
      }
      assert.ok((await existingCgroupDirs(cgroupsPath)).length > 0);

      await assert.rejects(
        execFileInCgroup('/bin/sh', ['-c', 'echo broken >&2; exit 3'], cgroupsPath, { timeoutMs: 10_000 }),
        (err: unknown) => err instanceof CgroupExecError && err.code === 3 && err.stderr === 'broken\n',
      );
      await assert.rejects(
        execFileInCgroup('/no/such/program', [], cgroupsPath, { timeoutMs: 10_000 }),
        (err: unknown) => err instanceof CgroupExecError && err.code === 127 && /no\/such\/program/.test(err.stderr),
      );
      await assert.rejects(
        execFileInCgroup('/bin/sleep', ['30'], cgroupsPath, { timeoutMs: 200 }),
        (err: unknown) => err instanceof CgroupExecError && err.code === 'SIGKILL',
      );
    } finally {
      await removeCgroup(cgroupsPath);
    }
    assert.deepEqual(await existingCgroupDirs(cgroupsPath), []);
  });
});
