import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import { ErrnoError } from '../../src/linux/libc/binding.js';
import { readText, type SpawnOutput, spawnChild, type SpawnStdin } from '../../src/linux/spawn.js';

/** Runs `sh -c script [args]` (stdout and stderr piped unless told); its outputs and exit. */
async function sh(script: string, options: { args?: string[]; stdin?: SpawnStdin; stdio?: [SpawnOutput, SpawnOutput] } = {}) {
  const child = spawnChild(
    'sh',
    ['-c', script, ...(options.args ?? [])],
    [options.stdin ?? 'ignore', ...(options.stdio ?? ['pipe', 'pipe'])],
  );
  const [exit, stdout, stderr] = await Promise.all([child.exited, readText(child.stdout), readText(child.stderr)]);
  return { pid: child.pid, exit, stdout, stderr };
}

describe('spawnChild (posix_spawn)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kuasar-spawn-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('looks the program up in PATH, passes the arguments and the environment, and reads both outputs', async () => {
    process.env.KUASAR_SPAWN_TEST = 'from the parent';
    try {
      const run = await sh('echo "$0|$1|$KUASAR_SPAWN_TEST"; echo to-stderr >&2; exit 3', { args: ['zero', 'one two'] });
      assert.equal(run.stdout, 'zero|one two|from the parent\n');
      assert.equal(run.stderr, 'to-stderr\n');
      assert.deepEqual(run.exit, { code: 3, signal: null });
    } finally {
      delete process.env.KUASAR_SPAWN_TEST;
    }
  });

  it('reports the signal that ended the child', async () => {
    const run = await sh('kill -TERM $$');
    assert.deepEqual(run.exit, { code: null, signal: 'SIGTERM' });
  });

  it('starts the child in a session of its own, with no signal ignored or blocked and only descriptors 0-2', async () => {
    // Node ignores SIGPIPE: the child must not inherit that. And a descriptor without
    // close-on-exec (dup's) must not reach it either.
    const dup = createRequire(import.meta.url)('koffi')
      .load('libc.so.6')
      .func('int dup(int)') as (fd: number) => number;
    const inheritable = dup(0);
    assert.ok(inheritable > 2);
    const run = await sh('cat /proc/$$/stat; echo; cat /proc/$$/status; echo fds; ls /proc/$$/fd').finally(() => closeSync(inheritable));
    const [stat, ...status] = run.stdout.split('\n');
    // After the command name: state, ppid, pgrp, session.
    const [, , pgrp, session] = stat!.slice(stat!.lastIndexOf(')') + 2).split(' ');
    assert.deepEqual([pgrp, session], [String(run.pid), String(run.pid)], 'sh leads its own session and process group');
    const field = (name: string): string | undefined => status.find((line) => line.startsWith(`${name}:`))?.split(/\s+/)[1];
    assert.equal(field('SigIgn'), '0000000000000000');
    assert.equal(field('SigBlk'), '0000000000000000');
    assert.deepEqual(status.slice(status.indexOf('fds') + 1), ['0', '1', '2', ''], "sh's descriptors");
  });

  it('gives the child descriptors of ours, and /dev/null for "ignore"', async () => {
    const out = join(dir, 'out');
    const fd = openSync(out, 'w');
    try {
      const run = await sh('readlink /proc/self/fd/0; echo written-to-the-file', { stdio: [fd, 'pipe'] });
      assert.deepEqual(run.exit, { code: 0, signal: null });
    } finally {
      closeSync(fd);
    }
    assert.equal(readFileSync(out, 'utf8'), '/dev/null\nwritten-to-the-file\n');
  });

  it('throws an ErrnoError naming the program when it cannot start', () => {
    assert.throws(
      () => spawnChild('kuasar-no-such-program', [], ['ignore', 'pipe', 'pipe']),
      (err: unknown) => err instanceof ErrnoError && err.code === 'ENOENT' && err.message === 'spawn kuasar-no-such-program: ENOENT',
    );
  });
});
