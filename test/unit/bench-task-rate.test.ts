import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TaskRateRun } from '../../src/bench/results.js';
import { bundleSpec, recordRun, type Span } from '../../src/bench/task-rate.js';

const ok = (sentAt: number, doneAt: number): PromiseSettledResult<Span> => ({ status: 'fulfilled', value: { sentAt, doneAt } });
const failed = (reason: unknown): PromiseSettledResult<Span> => ({ status: 'rejected', reason });
const emptyRun = (containers: number): TaskRateRun => ({ containers, ms: [], failures: [] });

test("a run's rate is its containers over the wall time from the first Create sent to the last reply", () => {
  const run = emptyRun(4);
  // Four containers, two at a time: 100..130, 105..140, 130..160, 140..350 ms.
  recordRun(run, ['a', 'b', 'c', 'd'], [ok(100, 130), ok(105, 140), ok(130, 160), ok(140, 350)]);
  assert.deepEqual(run.ms, [30, 35, 30, 210]);
  assert.equal(run.wallMs, 250);
  assert.equal(run.perSecond, 16);
  assert.equal(run.summary?.p50, 32.5);
  assert.deepEqual(run.failures, []);
  // The window is on the epoch clock kuasard stamps its log with.
  assert.equal(run.startedAt, performance.timeOrigin + 100);
  assert.equal(run.endedAt, performance.timeOrigin + 350);
});

test('a run with a failed container has no rate; containers an interruption kept from running count as one failure', () => {
  const run = emptyRun(3);
  recordRun(run, ['a', 'b', 'c'], [ok(0, 10), failed(new Error('exited with status 1')), ok(5, 20)]);
  assert.equal(run.perSecond, undefined);
  assert.equal(run.wallMs, undefined);
  assert.deepEqual(run.failures, ['b: exited with status 1']);
  assert.deepEqual(run.ms, [10, 15], 'the containers that did run keep their times');

  const interrupted = new Error('interrupted by SIGINT');
  const cut = emptyRun(4);
  recordRun(cut, ['a', 'b', 'c', 'd'], [ok(0, 10), failed(new Error('timeout')), failed(interrupted), failed(interrupted)], interrupted);
  assert.deepEqual(cut.failures, ['b: timeout', '2 containers not run: interrupted by SIGINT']);
  assert.equal(cut.perSecond, undefined);

  const none = emptyRun(1);
  recordRun(none, ['a'], [failed(interrupted)], interrupted);
  assert.equal(none.summary, undefined);
  assert.deepEqual(none.failures, ['1 container not run: interrupted by SIGINT']);
});

test("a container's bundle runs its module from the rootfs mount, with no terminal", () => {
  const spec = bundleSpec(['/sleep.wasm']);
  assert.deepEqual(spec.process.args, ['/sleep.wasm']);
  assert.equal(spec.process.terminal, false);
  assert.equal(spec.process.cwd, '/');
  assert.deepEqual(spec.root, { path: 'rootfs', readonly: true });
});
