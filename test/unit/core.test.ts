import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Code, RuntimeError } from '../../src/core/errors.js';
import { validateId } from '../../src/core/ids.js';
import { KeyedMutex } from '../../src/core/keyed-mutex.js';
import { writeJsonAtomic } from '../../src/core/state-file.js';

test('ids follow containerd identifier rules', () => {
  for (const ok of ['a', 'abc-123', 'a.b_c-d', 'f'.repeat(64), 'x'.repeat(76)]) assert.equal(validateId('sandbox', ok), ok);
  for (const bad of ['', '..', '../etc', 'a/b', 'a..b', '-a', 'a-', 'x'.repeat(77), 'a b', 'a\u0000b', '.hidden']) {
    assert.throws(
      () => validateId('sandbox', bad),
      (err: unknown) => err instanceof RuntimeError && err.code === Code.InvalidArgument,
      `"${bad}" should be refused`,
    );
  }
});

test('state files are replaced whole and leave no temporary file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kuasar-state-'));
  try {
    const path = join(dir, 'state.json');
    await writeJsonAtomic(path, { phase: 'created' });
    await writeJsonAtomic(path, { phase: 'ready', n: 2 });
    assert.deepEqual(JSON.parse(await readFile(path, 'utf8')), { phase: 'ready', n: 2 });
    assert.deepEqual(await readdir(dir), ['state.json']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the keyed mutex runs work for one key in order and other keys in parallel', async () => {
  const mutex = new KeyedMutex();
  const order: string[] = [];
  let releaseFirst!: () => void;
  const first = mutex.run('a', async () => {
    await new Promise<void>((resolve) => (releaseFirst = resolve));
    order.push('a1');
  });
  const second = mutex.run('a', async () => void order.push('a2'));
  await mutex.run('b', async () => void order.push('b1'));
  releaseFirst();
  await Promise.all([first, second]);
  assert.deepEqual(order, ['b1', 'a1', 'a2']);
  // A failure does not block the work queued behind it.
  await assert.rejects(mutex.run('c', async () => Promise.reject(new Error('boom'))), /boom/);
  assert.equal(await mutex.run('c', async () => 'after'), 'after');
});
