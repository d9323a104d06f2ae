import assert from 'node:assert/strict';
import { test } from 'node:test';
import { emptyMeasurements, measuredSomething, summarizeMeasurements } from '../../src/bench/measurements.js';
import type { StartedPod } from '../../src/bench/pods.js';
import type { HandlerInfo, MemoryPoint } from '../../src/bench/results.js';
import type { StageRecord } from '../../src/bench/stages.js';
import { breakdownsByHandler } from '../../src/bench/start-stages.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');

/** A memory point at `pods` pods; `afterGcPrivateKb` adds an after-GC reading. */
function point(pods: number, pssKb: number, privateKb: number, afterGcPrivateKb?: number): MemoryPoint {
  return {
    pods,
    pssKb,
    rssKb: pssKb,
    privateKb,
    processes: 1,
    reads: [pssKb],
    ...(afterGcPrivateKb !== undefined ? { afterGc: { pssKb, privateKb: afterGcPrivateKb, reads: [pssKb] } } : {}),
  };
}

/** A pod timed from T0+from to T0+to (ms). */
function pod(podId: string, from: number, to: number): StartedPod {
  return { podId, containerId: `${podId}-c`, startedAt: T0 + from, endedAt: T0 + to, ms: to - from, sandboxMs: (to - from) / 2 };
}

test('a run has measured something once a latency or memory part has begun, or a task run has a container time', () => {
  assert.equal(measuredSomething(emptyMeasurements()), false);

  const skipped = emptyMeasurements();
  skipped.taskRate = { handler: '', skipped: 'not measured', concurrency: 8, failures: [] };
  assert.equal(measuredSomething(skipped), false);
  skipped.taskRate.longRunning = { containers: 5, ms: [], failures: ['create failed'] };
  assert.equal(measuredSomething(skipped), false);
  skipped.taskRate.longRunning.ms.push(12);
  assert.equal(measuredSomething(skipped), true);

  // A latency part writes its entries when it begins: their failures are worth a report.
  const begun = emptyMeasurements();
  begun.single['kuasar-runc'] = { ms: [], sandboxMs: [], failures: ['round 1: refused'] };
  assert.equal(measuredSomething(begun), true);
});

test('summaries where there are figures; memory fits need two pod counts; the private fit uses after-GC figures only when every point has them', () => {
  const data = emptyMeasurements();
  data.single['kuasar-runc'] = { ms: [300, 100, 200], sandboxMs: [30, 10, 20], failures: [] };
  data.single['runc'] = { ms: [], sandboxMs: [], failures: ['round 1: refused'] };
  data.parallel['kuasar-runc'] = {
    pods: 2,
    rounds: [
      { wallMs: 30, podMs: [20, 25] },
      { wallMs: 10, podMs: [5, 8] },
    ],
    failures: [],
  };
  data.parallel['runc'] = { pods: 2, rounds: [], failures: [] };
  data.memory['one-count'] = { points: [point(1, 1000, 500), point(1, 1010, 510)], helpers: [], failures: [] };
  data.memory['after-gc'] = {
    points: [point(1, 1100, 600, 400), point(2, 1200, 700, 450), point(3, 1300, 800, 500)],
    helpers: [],
    failures: [],
  };
  data.memory['gc-missing'] = {
    points: [point(1, 1100, 600, 400), point(2, 1200, 700), point(3, 1300, 800, 500)],
    helpers: [],
    failures: [],
  };

  summarizeMeasurements(data, []);

  assert.deepEqual([data.single['kuasar-runc']?.summary?.p50, data.single['kuasar-runc']?.summary?.n], [200, 3]);
  assert.equal(data.single['runc']?.summary, undefined);
  assert.equal(data.single['kuasar-runc']?.sandboxSummary?.p50, 20, "RunPodSandbox's own summary");
  assert.equal(data.single['runc']?.sandboxSummary, undefined);
  assert.deepEqual([data.parallel['kuasar-runc']?.wall?.min, data.parallel['kuasar-runc']?.wall?.max], [10, 30]);
  assert.equal(data.parallel['runc']?.wall, undefined);
  assert.equal(data.memory['one-count']?.fit, undefined);
  assert.equal(data.memory['one-count']?.fitPrivate, undefined);
  const afterGc = data.memory['after-gc'];
  assert.deepEqual([afterGc?.fit?.slope, afterGc?.fit?.intercept], [100, 1000]);
  assert.equal(afterGc?.fitPrivate?.slope, 50);
  assert.equal(data.memory['gc-missing']?.fitPrivate?.slope, 100);
});

test("a task run's stage totals come from its own pod's records inside its window; a run without a window gets none", () => {
  const data = emptyMeasurements();
  data.taskRate = {
    handler: 'kuasar-wasm',
    podId: 'p',
    concurrency: 2,
    failures: [],
    longRunning: { containers: 2, startedAt: T0 + 1000, endedAt: T0 + 2000, ms: [10, 20], failures: [] },
    shortLived: { containers: 2, ms: [], failures: ['interrupted'] },
  };
  const records: StageRecord[] = [
    { stage: 'task.create', ms: 4, at: T0 + 1100, sandbox: 'p', rpc: 'create' },
    { stage: 'task.create', ms: 6, at: T0 + 1200, sandbox: 'p', rpc: 'create' },
    { stage: 'task.create', ms: 50, at: T0 + 1300, sandbox: 'other', rpc: 'create' },
    { stage: 'task.start', ms: 9, at: T0 + 2500, sandbox: 'p', rpc: 'start' },
  ];

  summarizeMeasurements(data, records);

  const stages = data.taskRate.longRunning?.stages;
  assert.deepEqual(
    stages?.map((s) => [s.stage, s.perContainer, s.meanMs, s.msPerContainer]),
    [['task.create', 1, 5, 5]],
  );
  assert.equal(data.taskRate.shortLived?.stages, undefined);
});

test("stage breakdowns: kuasar handlers with starts only; a one-at-a-time start takes kuasard's records that name no sandbox, a parallel one does not", () => {
  const handlers: HandlerInfo[] = [
    { handler: 'kuasar-runc', side: 'kuasar', kind: 'runc' },
    { handler: 'kuasar-wasm', side: 'kuasar', kind: 'wasm' },
    { handler: 'runc', side: 'baseline' },
  ];
  const data = emptyMeasurements();
  data.singleStarts.push({ handler: 'kuasar-runc', pod: pod('a', 1000, 1100) }, { handler: 'runc', pod: pod('z', 3000, 3100) });
  data.parallelStarts.push({ handler: 'kuasar-runc', pod: pod('b', 2000, 2200) });
  const records: StageRecord[] = [
    { stage: 'controller.create', ms: 13, at: T0 + 1015, rpc: 'create' },
    { stage: 'task.create', ms: 45, at: T0 + 1081, sandbox: 'a', rpc: 'create' },
    { stage: 'controller.create', ms: 20, at: T0 + 2050, rpc: 'create' },
    { stage: 'task.create', ms: 100, at: T0 + 2100, sandbox: 'b', rpc: 'create' },
    { stage: 'task.create', ms: 70, at: T0 + 3050, sandbox: 'z', rpc: 'create' },
  ];

  const stages = breakdownsByHandler(handlers, data, records);

  assert.deepEqual(Object.keys(stages), ['kuasar-runc']);
  const { single, parallel } = stages['kuasar-runc'] ?? {};
  assert.deepEqual(
    single?.rows.map((r) => r.stage),
    ['controller.create', 'task.create'],
  );
  assert.equal(single?.outside?.p50, 100 - 13 - 45);
  assert.deepEqual(
    parallel?.rows.map((r) => r.stage),
    ['task.create'],
  );
  assert.equal(parallel?.outside, undefined);
});
