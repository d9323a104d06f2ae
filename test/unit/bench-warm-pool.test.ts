// The benchmark's view of a kind's warm pool (bench/warm-pool.ts): a pool's state from its idle
// members' directories and kuasard's ready records, each start of a warm or cold series checked
// by kuasard's record of its VM, the idle members' processes told apart from the pods' and from
// kuasard's helpers, the warm-start phases and the two targets.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { emptyMeasurements } from '../../src/bench/measurements.js';
import { cpuTimeNs, findManagementPlane, idlePoolProcesses } from '../../src/bench/memory.js';
import type { StartedPod } from '../../src/bench/pods.js';
import { evaluateTargets, type BenchResult, type HandlerInfo } from '../../src/bench/results.js';
import { parseStageRecords } from '../../src/bench/stages.js';
import { summarize } from '../../src/bench/stats.js';
import { vmStartsByHandler } from '../../src/bench/vm-start.js';
import { keepStartsOfTheirSeries, poolState, PoolWatch, recordValues, startKind } from '../../src/bench/warm-pool.js';
import type { HostProcess } from '../../src/devenv/processes.js';
import { findKind } from '../../src/kinds/index.js';
import { vmName } from '../../src/kinds/vmm/sandbox.js';
import { WARM_DIR, WARM_VM_NAME_PREFIX } from '../../src/kinds/vmm/warm-vm.js';

const pool = findKind('vmm')?.bench?.warmPool;
const line = (fields: Record<string, unknown>) => JSON.stringify({ level: 30, time: 1, ...fields });
const WARM: HandlerInfo = { handler: 'kuasar-vmm warm', runtimeHandler: 'kuasar-vmm', side: 'kuasar', kind: 'vmm', pool: 'warm' };
const COLD: HandlerInfo = { handler: 'kuasar-vmm cold', runtimeHandler: 'kuasar-vmm', side: 'kuasar', kind: 'vmm', pool: 'cold' };
const RUNC: HandlerInfo = { handler: 'kuasar-runc', side: 'kuasar', kind: 'runc' };

const pod = (podId: string, startedAt = 0, endedAt = 1_000): StartedPod => ({
  podId,
  containerId: `c-${podId}`,
  startedAt,
  endedAt,
  ms: endedAt - startedAt,
  sandboxMs: (endedAt - startedAt) / 2,
});

test("the vmm kind's registration names its warm VMs as warm-vm.ts does, and its records as the pool and the sandbox log them", () => {
  assert.ok(pool);
  assert.equal(pool.argumentPrefix, WARM_VM_NAME_PREFIX);
  assert.equal(pool.idleDir, WARM_DIR);
  assert.ok(pool.argumentPrefix.startsWith('kuasar-vmm-'), "a claimed VM's name is also found by the pods' prefix");
  assert.deepEqual(pool.readyRecord, { msg: 'warm VM ready', idField: 'warmVm' });
  assert.equal(pool.claimedField, 'warmVm');
  assert.equal(pool.coldPod.memoryLimitMib, 257, "1 MiB more than default_memory_mib's 256");
  assert.deepEqual(
    pool.phases.map((p) => p.stages),
    [['vmm.read-network'], ['vmm.claim-warm'], ['vmm.setup-sandbox'], ['task.create'], ['task.start']],
  );
});

test("a pool's state: idle members logged ready, and the others booting; members already claimed are not counted", () => {
  assert.deepEqual(poolState(['a', 'b', 'c'], new Set(['a', 'c', 'gone'])), { ready: 2, booting: 1 });
  assert.deepEqual(poolState([], new Set(['a'])), { ready: 0, booting: 0 });
});

test("ready records: the kind's records with the message, their field's values; other kinds, messages and bad lines skipped", () => {
  const log = [
    line({ kind: 'vmm', msg: 'warm VM ready', warmVm: 'a1' }),
    line({ kind: 'vmm', msg: 'warm pool: filling' }),
    line({ kind: 'other', msg: 'warm VM ready', warmVm: 'x' }),
    '{"kind":"vmm","msg":"warm VM ready", broken',
    line({ kind: 'vmm', msg: 'warm VM ready', warmVm: 'b2' }),
  ].join('\n');
  assert.deepEqual(recordValues(log, { kind: 'vmm', msg: 'warm VM ready', field: 'warmVm' }), ['a1', 'b2']);
});

test('a pool watch reads the log on from where it stopped (a half-written last line waits) and waits for a full pool', async () => {
  assert.ok(pool);
  const dir = mkdtempSync(join(tmpdir(), 'bench-pool-'));
  try {
    const kindDir = join(dir, 'vmm');
    const logPath = join(dir, 'kuasard.log');
    writeFileSync(logPath, '');
    const watch = new PoolWatch('vmm', { ...pool, size: 2 }, kindDir, logPath);
    assert.deepEqual(watch.state(), { ready: 0, booting: 0 }, 'no directory yet');
    mkdirSync(join(kindDir, WARM_DIR, 'a1'), { recursive: true });
    mkdirSync(join(kindDir, WARM_DIR, 'b2'));
    appendFileSync(logPath, `${line({ kind: 'vmm', msg: 'warm VM ready', warmVm: 'a1' })}\n`);
    const half = line({ kind: 'vmm', msg: 'warm VM ready', warmVm: 'b2' });
    appendFileSync(logPath, half.slice(0, 20));
    assert.deepEqual(watch.state(), { ready: 1, booting: 1 });
    let full = false;
    const waiting = watch.untilFull(AbortSignal.timeout(30_000)).then(() => {
      full = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(full, false, 'one VM still boots');
    appendFileSync(logPath, `${half.slice(20)}\n`);
    await waiting;
    assert.deepEqual(watch.state(), { ready: 2, booting: 0 });
    assert.deepEqual([...watch.idleIds()].sort(), ['a1', 'b2']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("each start of a pool's series is checked by its VM's record: one that went otherwise leaves its series as a failure", () => {
  const log = [
    line({ kind: 'vmm', sandbox: 'w1', msg: 'VM ready', accel: 'tcg', warmVm: 'a1' }),
    line({ kind: 'vmm', sandbox: 'w2', msg: 'the VM boots cold', why: 'the warm pool is empty' }),
    line({ kind: 'vmm', sandbox: 'w2', msg: 'VM ready', accel: 'tcg' }),
    line({ kind: 'vmm', sandbox: 'c1', msg: 'VM ready', accel: 'tcg' }),
  ].join('\n');
  assert.equal(startKind(log, 'vmm', 'w1'), 'warm');
  assert.equal(startKind(log, 'vmm', 'w2'), 'cold');
  assert.equal(startKind(log, 'vmm', 'nothing'), undefined);
  assert.equal(startKind(log, 'runc', 'w1'), undefined, 'a kind without a pool');

  const data = emptyMeasurements();
  data.single[WARM.handler] = { ms: [1_000, 2_000, 3_000], sandboxMs: [500, 1_000, 1_500], failures: [] };
  data.single[COLD.handler] = { ms: [9_000], sandboxMs: [8_000], failures: [] };
  data.single[RUNC.handler] = { ms: [100], sandboxMs: [50], failures: [] };
  data.singleStarts.push(
    { handler: WARM.handler, pod: pod('w1') },
    { handler: COLD.handler, pod: pod('c1') },
    { handler: RUNC.handler, pod: pod('r1') },
    { handler: WARM.handler, pod: pod('w2') },
    { handler: WARM.handler, pod: pod('w3') },
  );
  keepStartsOfTheirSeries(data, [RUNC, WARM, COLD], log);
  assert.deepEqual(data.single[WARM.handler]?.ms, [1_000]);
  assert.deepEqual(data.single[WARM.handler]?.sandboxMs, [500]);
  assert.deepEqual(data.single[WARM.handler]?.failures, [
    'pod w2 started cold, not warm: left out of the series',
    "pod w3 started without a record of its VM in kuasard's log, not warm: left out of the series",
  ]);
  assert.deepEqual(data.single[COLD.handler]?.ms, [9_000]);
  assert.deepEqual(data.single[RUNC.handler]?.ms, [100], 'a series without a pool is not looked at');
  assert.deepEqual(
    data.singleStarts.map((s) => s.pod.podId),
    ['w1', 'c1', 'r1'],
  );
});

test("idle pool VMs are neither a pod's processes nor kuasard's helpers; a claimed one (its directory gone) is its pod's", () => {
  const host = (pid: number, ppid: number, cmdline: string, cgroup: string): HostProcess => ({
    pid,
    ppid,
    state: 'S',
    startTime: '1',
    cmdline,
    cgroups: [cgroup],
    namespaces: {},
  });
  const kuasard = host(100, 1, 'node /x/kuasard.js --config /env/kuasard.toml', '0::/');
  const qemu = (pid: number, name: string, ppid = 100): HostProcess => ({
    ...host(pid, ppid, '', '0::/elsewhere'),
    cmdline: `/usr/bin/qemu-system-x86_64 -name ${name},debug-threads=on -machine microvm,accel=tcg`,
  });
  const processes = [
    kuasard,
    qemu(201, vmName('cold1')),
    qemu(202, `${WARM_VM_NAME_PREFIX}aa`), // idle
    qemu(203, `${WARM_VM_NAME_PREFIX}bb`), // claimed by a pod
    qemu(204, `${WARM_VM_NAME_PREFIX}cc`, 999), // another environment's
  ];
  const idlePools = [{ argumentPrefix: WARM_VM_NAME_PREFIX, idleIds: new Set(['aa', 'cc']) }];
  assert.deepEqual(
    idlePoolProcesses(processes, idlePools, 100).map((p) => p.pid),
    [202],
  );
  assert.deepEqual(idlePoolProcesses(processes, idlePools, undefined), []);
  const location = findKind('vmm')?.bench?.podProcesses;
  assert.ok(location);
  const where = { kuasardConfig: '/env/kuasard.toml', containerdSocket: '/env/containerd.sock', cgroupName: 'kuasar-kdev-abc' };
  const plane = findManagementPlane(processes, { ...where, podProcesses: location, idlePools });
  assert.deepEqual([...plane.podProcesses.keys()], [vmName('cold1'), `${WARM_VM_NAME_PREFIX}bb`]);
  assert.deepEqual(
    plane.idlePool.map((p) => p.pid),
    [202],
  );
  assert.deepEqual(plane.kuasardHelpers, []);
  // Another kind's memory phase (no pod processes of its own): the idle VMs are still no helpers of kuasard's.
  const runcPlane = findManagementPlane(processes, { ...where, idlePools });
  assert.deepEqual(
    runcPlane.kuasardHelpers.map((p) => p.pid),
    [201, 203],
  );
});

test('a warm start is split into its own phases: network read, claim, set-up in the guest, container created and started', () => {
  const at = (ms: number) => ({ time: ms });
  const log = [
    line({ kind: 'vmm', sandbox: 'w1', msg: 'stage', stage: 'vmm.read-network', ms: 20, ...at(100) }),
    line({ kind: 'vmm', sandbox: 'w1', msg: 'stage', stage: 'vmm.claim-warm', ms: 80, ...at(200) }),
    line({ kind: 'vmm', sandbox: 'w1', msg: 'stage', stage: 'vmm.setup-sandbox', ms: 900, ...at(1_100) }),
    line({ rpc: 'start', sandbox: 'w1', msg: 'stage', stage: 'controller.start', ms: 1_050, ...at(1_150) }),
    line({ rpc: 'create', sandbox: 'w1', msg: 'stage', stage: 'task.create', ms: 400, ...at(1_600) }),
    line({ rpc: 'start', sandbox: 'w1', msg: 'stage', stage: 'task.start', ms: 200, ...at(1_850) }),
  ]
    .map((l) => l.replace(/"time":(\d+)/, (_, ms: string) => `"time":"${new Date(Number(ms)).toISOString()}"`))
    .join('\n');
  const data = emptyMeasurements();
  data.singleStarts.push({ handler: WARM.handler, pod: pod('w1', 0, 2_000) });
  const result = vmStartsByHandler([WARM], data, parseStageRecords(log), log)[WARM.handler];
  assert.deepEqual(
    result?.single?.phases.map((p) => [p.stages[0], p.p50]),
    [
      ['vmm.read-network', 20],
      ['vmm.claim-warm', 80],
      ['vmm.setup-sandbox', 900],
      ['task.create', 400],
      ['task.start', 200],
    ],
  );
  assert.equal(result?.single?.rest.p50, 2_000 - 1_600);
});

test('the targets: a warm start >= 5x faster than a cold one, its RunPodSandbox <= 2x the runc kind; a miss names where it goes', () => {
  const single = (ms: number[], sandboxMs: number[]) => ({
    ms,
    sandboxMs,
    failures: [],
    summary: summarize(ms),
    sandboxSummary: summarize(sandboxMs),
  });
  const base = {
    handlers: [RUNC, WARM, COLD, { handler: 'runc', side: 'baseline' as const }],
    single: {
      [RUNC.handler]: single([300], [200]),
      [WARM.handler]: single([3_000], [2_000]),
      [COLD.handler]: single([30_000], [25_000]),
    },
    parallel: {},
    memory: {},
    stages: {
      [WARM.handler]: {
        single: {
          starts: 1,
          e2e: summarize([3_000]),
          rows: [
            { stage: 'controller.start', rpc: true, perStart: 1, p50: 1_500, p90: 1_500, share: 0.5 },
            { stage: 'vmm.claim-warm', rpc: false, within: 'controller.start', perStart: 1, p50: 100, p90: 100, share: 0.03 },
            { stage: 'vmm.setup-sandbox', rpc: false, within: 'controller.start', perStart: 1, p50: 1_300, p90: 1_300, share: 0.43 },
          ],
        },
      },
    },
  } as unknown as Omit<BenchResult, 'targets'>;
  const targets = evaluateTargets(base).filter((t) => t.title.startsWith('vmm kind'));
  assert.equal(targets.length, 2);
  const [speed, sandbox] = targets;
  assert.equal(speed?.status, 'met');
  assert.equal(speed?.value, 10);
  assert.match(speed?.measured ?? '', /^warm 3000\.0 ms, cold 30000\.0 ms: 10\.00x$/);
  assert.equal(sandbox?.status, 'not met');
  assert.equal(sandbox?.value, 10);
  assert.equal(sandbox?.note, "kuasard's controller.start takes p50 1500.0 ms of it, most of it in vmm.setup-sandbox (p50 1300.0 ms)");

  const close = { ...base, single: { ...base.single, [COLD.handler]: single([6_000], [5_000]), [RUNC.handler]: single([2_000], [1_500]) } };
  const [slow, fits] = evaluateTargets(close).filter((t) => t.title.startsWith('vmm kind'));
  assert.equal(slow?.status, 'not met');
  assert.equal(fits?.status, 'met');
  assert.equal(
    evaluateTargets({ ...base, single: {} }).filter((t) => t.title.startsWith('vmm kind') && t.status === 'not measured').length,
    2,
  );
});

test("a process's CPU time is the sum of its threads' time on a CPU; a process that is gone has none", () => {
  const before = cpuTimeNs(process.pid);
  const until = performance.now() + 50;
  while (performance.now() < until) {
    // Busy: this thread's CPU time grows.
  }
  const after = cpuTimeNs(process.pid);
  assert.ok(before > 0);
  assert.ok(after - before >= 20e6, `${after - before} ns for 50 ms of busy loop`);
  assert.equal(cpuTimeNs(2 ** 22 + 1), 0);
});

test("a pool VM's boot records (its id, no sandbox) are no start's; a claimed VM's records of its pod stay", () => {
  const time = new Date(1_000).toISOString();
  const log = [
    line({ kind: 'vmm', warmVm: 'a1', msg: 'stage', stage: 'vmm.qemu-start', ms: 900, time }),
    line({ kind: 'vmm', sandbox: 'w1', warmVm: 'a1', msg: 'stage', stage: 'vmm.claim-warm', ms: 80, time }),
    line({ kind: 'vmm', msg: 'stage', stage: 'vmm.other', ms: 5, time }),
  ].join('\n');
  assert.deepEqual(
    parseStageRecords(log, [pool?.readyRecord.idField ?? '']).map((r) => r.stage),
    ['vmm.claim-warm', 'vmm.other'],
  );
  assert.equal(parseStageRecords(log).length, 3, 'without a pool, every record');
});
