// A VM pod's start phase by phase (bench/vm-start.ts): each phase is the time of some stage
// records of a start less that of stages inside them; the rest is what no phase holds; the
// accelerator comes from kuasard's record of each VM that came up.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { emptyMeasurements } from '../../src/bench/measurements.js';
import type { StartedPod } from '../../src/bench/pods.js';
import { parseStageRecords, type StageRecord } from '../../src/bench/stages.js';
import { countFieldValues, phaseBreakdown, vmStartsByHandler } from '../../src/bench/vm-start.js';
import { findKind } from '../../src/kinds/index.js';

const PHASES = [
  { phase: 'network', stages: ['vmm.read-network', 'vmm.connect-taps'] },
  { phase: 'firmware', stages: ['vmm.agent-ready'], minus: ['vmm.guest-boot'] },
  { phase: 'kernel', stages: ['vmm.guest-boot'], minus: ['vmm.agent-start'] },
  { phase: 'agent', stages: ['vmm.agent-start'] },
  { phase: 'created', stages: ['task.create'] },
];

const rec = (stage: string, ms: number, extra: Partial<StageRecord> = {}): StageRecord => ({ stage, ms, at: 0, sandbox: 's', ...extra });

test('phases: stages summed, inner phases taken out, the rest is what no phase holds; percentiles per phase over the starts', () => {
  const start = (ms: number, guestBoot: number, agentStart: number) => ({
    ms,
    records: [
      rec('vmm.read-network', 100),
      rec('vmm.connect-taps', 50),
      rec('vmm.agent-start', agentStart),
      rec('vmm.guest-boot', guestBoot),
      rec('vmm.agent-ready', guestBoot + 500),
      rec('controller.start', guestBoot + 800, { rpc: 'start' }),
      rec('task.create', 1_000, { rpc: 'create' }),
    ],
  });
  const b = phaseBreakdown([start(10_000, 6_000, 4_000), start(12_000, 7_000, 5_000)], PHASES);
  assert.ok(b);
  assert.equal(b.starts, 2);
  assert.deepEqual(
    b.phases.map((p) => [p.phase, p.p50, p.recorded]),
    [
      ['network', 150, true],
      ['firmware', 500, true],
      ['kernel', 2_000, true],
      ['agent', 4_500, true],
      ['created', 1_000, true],
    ],
  );
  assert.deepEqual(b.phases[3]?.stages, ['vmm.agent-start']);
  assert.deepEqual(b.phases[1]?.minus, ['vmm.guest-boot']);
  // Start 1: 150 + 500 + 2000 + 4000 + 1000 = 7650 of 10 000; start 2: 150 + 500 + 2000 + 5000 + 1000 = 8650 of 12 000.
  assert.deepEqual([b.rest.p50, b.e2e.p50], [(2_350 + 3_350) / 2, 11_000]);
  assert.ok(Math.abs(b.rest.share - (2_350 + 3_350) / 22_000) < 1e-12);
  assert.ok(Math.abs((b.phases[3]?.share ?? 0) - 9_000 / 22_000) < 1e-12);
  const shares = b.phases.reduce((sum, p) => sum + p.share, 0) + b.rest.share;
  assert.ok(Math.abs(shares - 1) < 1e-12, 'the phases and the rest make the whole');

  // A phase no start has a record of is shown as such (a renamed stage would otherwise look like 0 ms).
  const withoutAgent = phaseBreakdown([{ ms: 1_000, records: [rec('task.create', 300, { rpc: 'create' })] }], PHASES);
  assert.deepEqual(
    withoutAgent?.phases.map((p) => p.recorded),
    [false, false, false, false, true],
  );
  assert.equal(phaseBreakdown([], PHASES), undefined);
});

test("the accelerator: kuasard's record of each VM that came up, of the kind, counted by its field", () => {
  const line = (fields: Record<string, unknown>) => JSON.stringify({ level: 'info', time: '2026-01-01T00:00:00.000Z', ...fields });
  const log = [
    line({ kind: 'vmm', sandbox: 'a', accel: 'tcg', msg: 'VM ready' }),
    line({ kind: 'vmm', sandbox: 'b', accel: 'tcg', msg: 'VM ready' }),
    line({ kind: 'vmm', sandbox: 'c', accel: 'kvm', msg: 'VM ready' }),
    line({ kind: 'other', accel: 'kvm', msg: 'VM ready' }),
    line({ kind: 'vmm', accel: 'tcg', msg: 'VM ready soon' }),
    line({ kind: 'vmm', msg: 'VM ready' }),
    '{"msg":"VM ready", broken',
    'not json',
  ].join('\n');
  assert.deepEqual(countFieldValues(log, { kind: 'vmm', msg: 'VM ready', field: 'accel' }), { tcg: 2, kvm: 1 });
  assert.deepEqual(countFieldValues('', { kind: 'vmm', msg: 'VM ready', field: 'accel' }), {});
});

test("by handler: only kinds whose pods are VMs; one pod at a time every record of the window, in the batches the pod's own", () => {
  const T0 = 1_700_000_000_000;
  const pod = (podId: string, from: number, to: number): StartedPod => ({
    podId,
    containerId: `${podId}-c`,
    startedAt: T0 + from,
    endedAt: T0 + to,
    ms: to - from,
    sandboxMs: (to - from) / 2,
  });
  const log = [
    { stage: 'vmm.qemu-start', ms: 300, at: 400, sandbox: 'p1' },
    { stage: 'controller.platform', ms: 1, at: 900 }, // names no sandbox: the single start's only
    { stage: 'vmm.qemu-start', ms: 200, at: 2_500, sandbox: 'p2' },
    { stage: 'vmm.qemu-start', ms: 250, at: 2_600, sandbox: 'p3' },
  ]
    .map((r) => JSON.stringify({ kind: 'vmm', msg: 'stage', time: new Date(T0 + r.at).toISOString(), ...r }))
    .concat([JSON.stringify({ kind: 'vmm', accel: 'tcg', msg: 'VM ready' })])
    .join('\n');
  const data = emptyMeasurements();
  data.singleStarts.push({ handler: 'kuasar-vmm', pod: pod('p1', 0, 1_000) }, { handler: 'kuasar-runc', pod: pod('r1', 0, 1_000) });
  data.parallelStarts.push(
    { handler: 'kuasar-vmm', pod: pod('p2', 2_000, 3_000) },
    { handler: 'kuasar-vmm', pod: pod('p3', 2_000, 3_000) },
  );
  const handlers = [
    { handler: 'kuasar-runc', side: 'kuasar' as const, kind: 'runc' },
    { handler: 'kuasar-vmm', side: 'kuasar' as const, kind: 'vmm' },
    { handler: 'runc', side: 'baseline' as const },
  ];
  const results = vmStartsByHandler(handlers, data, parseStageRecords(log), log);
  assert.deepEqual(Object.keys(results), ['kuasar-vmm']);
  const vm = results['kuasar-vmm'];
  assert.deepEqual(vm?.accelerators, { tcg: 1 });
  const phaseOf = (b: typeof vm.single) => b?.phases.find((p) => p.stages.includes('vmm.qemu-start'));
  assert.equal(vm?.single?.starts, 1);
  assert.equal(phaseOf(vm?.single)?.p50, 300);
  assert.equal(vm?.parallel?.starts, 2);
  assert.equal(phaseOf(vm?.parallel)?.p50, 225, "each batch pod takes its own sandbox's records");
  assert.equal(vm?.single?.phases.length, findKind('vmm')?.bench?.vmStart?.phases.length);
});
