// The registry where streams containerd opens wait for the process that uses them.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { Code, RuntimeError } from '../../src/base/errors.js';
import { StreamRegistry } from '../../src/base/streams.js';

const hasCode = (code: Code) => (err: unknown) => err instanceof RuntimeError && err.code === code;

test('a stream offered before it is asked for is taken once', async () => {
  const registry = new StreamRegistry();
  const stream = new PassThrough();
  registry.offer('c1-stdout', stream);
  assert.equal(registry.pending, 1);
  assert.equal(await registry.take('c1-stdout', 100), stream);
  assert.equal(registry.pending, 0);
  await assert.rejects(registry.take('c1-stdout', 10), hasCode(Code.FailedPrecondition));
});

test('a taker waits for the stream to be offered, but not forever', async () => {
  const registry = new StreamRegistry();
  const stream = new PassThrough();
  const taken = registry.take('c1-stdin', 1000);
  registry.offer('c1-stdin', stream);
  assert.equal(await taken, stream);
  await assert.rejects(registry.take('never', 20), /stream never was not opened by containerd within 20 ms/);
  const first = registry.take('twice', 50);
  await assert.rejects(registry.take('twice', 50), hasCode(Code.AlreadyExists));
  await assert.rejects(first, hasCode(Code.FailedPrecondition));
});

test('a stream offered again replaces the old one, and one that closes untaken is dropped', async () => {
  const registry = new StreamRegistry();
  const old = new PassThrough();
  const replacement = new PassThrough();
  registry.offer('c1-stderr', old);
  registry.offer('c1-stderr', replacement);
  assert.equal(old.destroyed, true);
  const gone = new PassThrough();
  registry.offer('gone', gone);
  gone.destroy();
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(registry.pending, 1);
  registry.close();
  assert.equal(replacement.destroyed, true);
  assert.equal(registry.pending, 0);
});
