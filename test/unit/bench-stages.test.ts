import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OUTSIDE_KUASARD, parseStageRecords, recordsOfStart, stageBreakdown, stageTotals } from '../../src/bench/stages.js';

const T0 = Date.parse('2026-01-01T00:00:00.000Z');

/** A kuasard log line as pino writes it; `at` is ms after T0. */
function stage(at: number, name: string, ms: number, fields: { sandbox?: string; container?: string; rpc?: string } = {}): string {
  return JSON.stringify({
    level: 'debug',
    time: new Date(T0 + at).toISOString(),
    pid: 1,
    kind: 'runc',
    ...fields,
    stage: name,
    ms,
    msg: 'stage',
  });
}

// Pod a, started at T0+1000 and RUNNING at T0+1100 (100 ms); pod b at T0+2000..2200 (200 ms).
const LOG = [
  JSON.stringify({ level: 'info', time: new Date(T0).toISOString(), msg: 'kuasard ready' }),
  'not json at all, with "stage" in it',
  stage(1010, 'runc.pin-namespaces', 6, { sandbox: 'a' }),
  stage(1015, 'controller.create', 13, { rpc: 'create' }),
  stage(1020, 'controller.start', 3, { rpc: 'start' }),
  stage(1022, 'controller.status', 0.2, { rpc: 'status' }),
  stage(1030, 'controller.status', 0.2, { rpc: 'status' }),
  stage(1040, 'runc.mount-rootfs', 1, { sandbox: 'a', container: 'ca' }),
  stage(1050, 'oci.create', 5, { sandbox: 'other', container: 'x' }),
  stage(1080, 'oci.create', 40, { sandbox: 'a', container: 'ca' }),
  stage(1081, 'task.create', 45, { sandbox: 'a', rpc: 'create' }),
  stage(1095, 'oci.start', 7, { sandbox: 'a', container: 'ca' }),
  stage(1100, 'task.start', 12, { sandbox: 'a', rpc: 'start' }),
  stage(1400, 'task.wait', 300, { sandbox: 'a', rpc: 'wait' }),
  stage(2050, 'controller.create', 20, { rpc: 'create' }),
  stage(2099, 'oci.create', 90, { sandbox: 'b', container: 'cb' }),
  stage(2100, 'task.create', 100, { sandbox: 'b', rpc: 'create' }),
  stage(2149, 'oci.start', 8, { sandbox: 'b', container: 'cb' }),
  stage(2150, 'task.start', 10, { sandbox: 'b', rpc: 'start' }),
].join('\n');

const A = { sandbox: 'a', startedAt: T0 + 1000.4, endedAt: T0 + 1100.7 };
const B = { sandbox: 'b', startedAt: T0 + 2000, endedAt: T0 + 2200 };

test("stage records are read from kuasard's JSON lines; other lines are skipped", () => {
  const records = parseStageRecords(LOG);
  assert.equal(records.length, 17);
  assert.deepEqual(records[0], { stage: 'runc.pin-namespaces', ms: 6, at: T0 + 1010, sandbox: 'a' });
  assert.deepEqual(records[1], { stage: 'controller.create', ms: 13, at: T0 + 1015, rpc: 'create' });
  assert.deepEqual(records[5], { stage: 'runc.mount-rootfs', ms: 1, at: T0 + 1040, sandbox: 'a', container: 'ca' });
});

test('a start gets the records that ended in its window and name its sandbox, or none when asked', () => {
  const records = parseStageRecords(LOG);
  const alone = recordsOfStart(records, A, { includeUnnamed: true }).map((r) => r.stage);
  assert.deepEqual(alone, [
    'runc.pin-namespaces',
    'controller.create',
    'controller.start',
    'controller.status',
    'controller.status',
    'runc.mount-rootfs',
    'oci.create',
    'task.create',
    'oci.start',
    'task.start', // ended in the window's last millisecond
  ]);
  const named = recordsOfStart(records, A, { includeUnnamed: false }).map((r) => r.stage);
  assert.deepEqual(named, ['runc.pin-namespaces', 'runc.mount-rootfs', 'oci.create', 'task.create', 'oci.start', 'task.start']);
});

test('the breakdown nests stages under their RPC, sums repeats, and finds what dominates', () => {
  const records = parseStageRecords(LOG);
  const starts = [
    { ms: 100, records: recordsOfStart(records, A, { includeUnnamed: true }) },
    { ms: 200, records: recordsOfStart(records, B, { includeUnnamed: true }) },
  ];
  const b = stageBreakdown(starts, { everyRpc: true });
  assert.ok(b?.outside && b.dominant);
  assert.equal(b.starts, 2);
  assert.equal(b.e2e.p50, 150);
  assert.deepEqual(
    b.rows.map((r) => [r.stage, r.within ?? (r.rpc ? 'RPC' : '?')]),
    [
      ['controller.create', 'RPC'],
      ['runc.pin-namespaces', 'controller.create'],
      ['controller.start', 'RPC'],
      ['controller.status', 'RPC'],
      ['task.create', 'RPC'],
      ['runc.mount-rootfs', 'task.create'],
      ['oci.create', 'task.create'],
      ['task.start', 'RPC'],
      ['oci.start', 'task.start'],
    ],
  );
  const row = (name: string) => b.rows.find((r) => r.stage === name)!;
  assert.equal(row('controller.status').perStart, 1, 'two calls in one start, none in the other');
  assert.ok(Math.abs(row('controller.status').p50 - 0.2) < 1e-9, 'per-start totals: 0.4 and 0');
  assert.equal(row('task.create').p50, 72.5);
  assert.ok(Math.abs(row('task.create').share - 145 / 300) < 1e-9);
  assert.equal(row('runc.pin-namespaces').p50, 3, 'a start without the stage counts 0');
  // Outside kuasard's RPCs: 100 - 73.4 and 200 - 130.
  assert.ok(Math.abs(b.outside.share - 96.6 / 300) < 1e-9);
  assert.ok(Math.abs(b.outside.p50 - (26.6 + 70) / 2) < 1e-9);
  // oci.create has 130 of 300 ms of its own; task.create only 145 - 131.
  assert.equal(b.dominant.stage, 'oci.create in task.create');
  assert.ok(Math.abs(b.dominant.share - 130 / 300) < 1e-9);
});

test('time outside kuasard dominates when no stage comes close', () => {
  const b = stageBreakdown([{ ms: 100, records: [{ stage: 'task.start', ms: 10, at: 0, rpc: 'start' }] }], { everyRpc: true });
  assert.deepEqual(b?.dominant, { stage: OUTSIDE_KUASARD, share: 0.9 });
  assert.equal(stageBreakdown([], { everyRpc: true }), undefined);
});

test('without every RPC (pods started in parallel) there is no outside time, and nesting is by time', () => {
  const records = parseStageRecords(LOG);
  const b = stageBreakdown([{ ms: 100, records: recordsOfStart(records, A, { includeUnnamed: false }) }], { everyRpc: false });
  assert.equal(b?.outside, undefined);
  const within = Object.fromEntries(b?.rows.map((r) => [r.stage, r.within ?? (r.rpc ? 'RPC' : 'none')]) ?? []);
  // controller.create, which pinned the namespaces, is not among these records.
  assert.deepEqual(within, {
    'runc.pin-namespaces': 'none',
    'task.create': 'RPC',
    'runc.mount-rootfs': 'task.create',
    'oci.create': 'task.create',
    'task.start': 'RPC',
    'oci.start': 'task.start',
  });
  assert.deepEqual(b?.dominant, { stage: 'oci.create in task.create', share: 0.4 });
});

test("stage totals of many containers at once: the pod's records in the window, per container on average", () => {
  const records = [
    { stage: 'wasm.instantiate', ms: 4, at: T0 + 10, sandbox: 'p', container: 'c1' },
    { stage: 'task.create', ms: 6, at: T0 + 11, sandbox: 'p', rpc: 'create' },
    { stage: 'wasm.instantiate', ms: 8, at: T0 + 12, sandbox: 'p', container: 'c2' },
    { stage: 'task.create', ms: 10, at: T0 + 13, sandbox: 'p', rpc: 'create' },
    { stage: 'task.start', ms: 1, at: T0 + 14, sandbox: 'p', rpc: 'start' },
    { stage: 'task.create', ms: 50, at: T0 + 14, sandbox: 'other', rpc: 'create' },
    { stage: 'controller.status', ms: 1, at: T0 + 14, rpc: 'status' },
    { stage: 'task.start', ms: 1, at: T0 + 30, sandbox: 'p', rpc: 'start' }, // after the window
  ];
  const totals = stageTotals(records, { sandbox: 'p', startedAt: T0 + 10, endedAt: T0 + 20 }, 2);
  assert.deepEqual(
    totals.map((t) => [t.stage, t.rpc, t.perContainer, t.meanMs, t.msPerContainer]),
    [
      ['wasm.instantiate', false, 1, 6, 6],
      ['task.create', true, 1, 8, 8],
      ['task.start', true, 0.5, 1, 0.5],
    ],
  );
  assert.ok(Math.abs((totals[1]?.p90Ms ?? 0) - 9.6) < 1e-9);
  assert.deepEqual(stageTotals(records, { sandbox: 'none', startedAt: T0, endedAt: T0 + 100 }, 2), []);
});

test('a step run in several RPCs has a row in each, and a step inside a step nests under it', () => {
  // An appkernel pod: runsc.create-sandbox runs `runsc create` (oci.create) in controller.start, and
  // the container's oci.create runs in task.create; oci.start likewise. The start took 700 ms.
  const records = [
    { stage: 'controller.create', ms: 8, at: 1010, rpc: 'create' },
    { stage: 'oci.create', ms: 190, at: 1200, sandbox: 'p' },
    { stage: 'runsc.create-sandbox', ms: 191.5, at: 1201, sandbox: 'p' },
    { stage: 'oci.start', ms: 135, at: 1340, sandbox: 'p' },
    { stage: 'runsc.start-sandbox', ms: 137, at: 1341, sandbox: 'p' },
    { stage: 'controller.start', ms: 333, at: 1342, rpc: 'start' },
    { stage: 'oci.create', ms: 80, at: 1430, sandbox: 'p', container: 'c' },
    { stage: 'task.create', ms: 85, at: 1431, sandbox: 'p', rpc: 'create' },
    { stage: 'oci.start', ms: 150, at: 1600, sandbox: 'p', container: 'c' },
    { stage: 'task.start', ms: 155, at: 1601, sandbox: 'p', rpc: 'start' },
  ];
  const b = stageBreakdown([{ ms: 700, records }], { everyRpc: true });
  assert.deepEqual(
    b?.rows.map((r) => [r.stage, r.within ?? 'RPC', r.inside ?? '-', r.p50]),
    [
      ['controller.create', 'RPC', '-', 8],
      ['controller.start', 'RPC', '-', 333],
      ['runsc.create-sandbox', 'controller.start', '-', 191.5],
      ['oci.create', 'controller.start', 'runsc.create-sandbox', 190],
      ['runsc.start-sandbox', 'controller.start', '-', 137],
      ['oci.start', 'controller.start', 'runsc.start-sandbox', 135],
      ['task.create', 'RPC', '-', 85],
      ['oci.create', 'task.create', '-', 80],
      ['task.start', 'RPC', '-', 155],
      ['oci.start', 'task.start', '-', 150],
    ],
  );
  // Own time: controller.start 333 - 191.5 - 137, runsc.create-sandbox 1.5, its oci.create 190.
  assert.deepEqual(b?.dominant, { stage: 'oci.create in controller.start', share: 190 / 700 });
  assert.ok(Math.abs((b?.outside?.p50 ?? 0) - (700 - 8 - 333 - 85 - 155)) < 1e-9);
});
