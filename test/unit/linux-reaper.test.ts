import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { UNKNOWN_EXIT_STATUS } from '../../src/base/model.js';
import { isChildSubreaper } from '../../src/linux/libc/processes.js';
import { readProcStat } from '../../src/linux/proc.js';
import { Reaper } from '../../src/linux/reaper.js';

const run = promisify(execFile);

/** Starts `script` in the background of a shell that exits at once; returns the orphan's pid. */
async function orphan(script: string): Promise<number> {
  const { stdout } = await run('sh', ['-c', `(${script}) </dev/null >/dev/null 2>&1 & echo $!`]);
  return Number(stdout.trim());
}

function parentOf(pid: number): Promise<number> {
  return run('ps', ['-o', 'ppid=', '-p', String(pid)]).then(({ stdout }) => Number(stdout.trim()));
}

describe('Reaper', () => {
  const reaper = new Reaper({ pollIntervalMs: 50 });
  before(() => reaper.start());
  after(() => reaper.stop());

  it('makes this process a child subreaper', () => {
    assert.equal(isChildSubreaper(), true);
  });

  it('reaps a double-forked orphan with its exit code', async () => {
    const started = new Date().toISOString();
    const pid = await orphan('sleep 0.2; exit 7');
    assert.equal(await parentOf(pid), process.pid, 'the orphan is re-parented to us');
    const exit = await reaper.watch(pid);
    assert.equal(exit.exitStatus, 7);
    // ISO times of one clock compare as strings: the exit was seen after the start, and by now.
    assert.ok(started <= exit.exitedAt && exit.exitedAt <= new Date().toISOString(), `exited at ${exit.exitedAt}`);
    assert.equal(reaper.size, 0);
  });

  it('reaps a process that is a zombie already when watched', async () => {
    // It must outlive the shell that starts it, or that shell reaps it as its own job.
    const pid = await orphan('sleep 0.05; exit 5');
    await sleep(300);
    assert.deepEqual((await reaper.watch(pid)).exitStatus, 5);
  });

  it('reports a signal death as 128 + signal', async () => {
    const pid = await orphan('exec sleep 30');
    const exited = reaper.watch(pid);
    assert.equal(reaper.watch(pid), exited, 'watching twice shares one promise');
    process.kill(pid, 'SIGKILL');
    const exit = await exited;
    assert.equal(exit.exitStatus, 128 + 9);
  });

  it('reaps many orphans whose SIGCHLDs coalesce', async () => {
    const pids = await Promise.all([1, 2, 3, 4, 5, 6].map((code) => orphan(`sleep 0.1; exit ${code}`)));
    const exits = await Promise.all(pids.map((pid) => reaper.watch(pid)));
    assert.deepEqual(
      exits.map((e) => e.exitStatus),
      [1, 2, 3, 4, 5, 6],
    );
  });

  it('leaves the exit codes of Node’s own children to child_process', async () => {
    const watched = reaper.watch(await orphan('sleep 0.3; exit 9'));
    const codes = await Promise.all(
      [3, 4, 0].map(
        (code) =>
          new Promise<number | null>((resolve) => {
            spawn('sh', ['-c', `sleep 0.1; exit ${code}`]).on('exit', (status) => resolve(status));
          }),
      ),
    );
    assert.deepEqual(codes, [3, 4, 0]);
    await assert.rejects(run('sh', ['-c', 'exit 6']), { code: 6 });
    assert.equal((await watched).exitStatus, 9);
  });

  it('rejects with ECHILD a pid that is not our child', async () => {
    await assert.rejects(reaper.watch(1), { name: 'ErrnoError', code: 'ECHILD' });
    assert.equal(reaper.size, 0);
  });

  it('watches a foreign process through a pidfd, without its status', async () => {
    // A child_process child is reaped by libuv, so to the Reaper it is as good as foreign.
    const child = spawn('sleep', ['0.2']);
    const exit = await reaper.watchForeign(child.pid!);
    assert.equal(exit.exitStatus, UNKNOWN_EXIT_STATUS);
    assert.equal(reaper.size, 0);
  });

  it('resolves a foreign watch at once when the pid is gone', async () => {
    const { stdout } = await run('sh', ['-c', 'echo $$']);
    const exit = await reaper.watchForeign(Number(stdout.trim()));
    assert.equal(exit.exitStatus, UNKNOWN_EXIT_STATUS);
  });
});

describe('Reaper before start', () => {
  it('refuses to watch', () => {
    assert.throws(() => new Reaper().watch(1), /not started/);
  });
});

describe('Reaper with orphans picked by reapOrphans', () => {
  it('reaps unwatched orphans that reapOrphans picks once their grace has passed, and leaves a watched one its status', async () => {
    // A program named `helper-orphan` (its comm), like a runtime's helper nobody tells us about.
    const dir = mkdtempSync(join(tmpdir(), 'reaper-'));
    const helper = join(dir, 'helper-orphan');
    copyFileSync('/bin/sh', helper);
    const picked = new Reaper({ pollIntervalMs: 50 }).start();
    try {
      picked.reapOrphans((stat) => stat.comm === 'helper-orphan');
      // Each outlives the shell that starts it (a shell reaps a background job that ended before
      // the shell did), so that it is ours once it ends. Unwatched: a zombie of ours until the
      // sweep past its grace reaps it.
      const lost = await orphan(`${helper} -c 'sleep 0.3; exit 3'`);
      const watched = await orphan(`${helper} -c 'sleep 0.3; exit 9'`);
      // Watched within the grace: its status is the watch's, not the sweep's.
      assert.equal((await picked.watch(watched)).exitStatus, 9);
      const deadline = Date.now() + 10_000;
      while (readProcStat(lost) !== undefined && Date.now() < deadline) await sleep(50);
      assert.equal(readProcStat(lost), undefined, 'the unwatched orphan was reaped');
    } finally {
      picked.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
