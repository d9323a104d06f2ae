import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { benchCharts, cumulativePoints, renderSvg } from '../../src/bench/charts.js';
import { renderMarkdown } from '../../src/bench/markdown.js';
import { runDirName, writeResults } from '../../src/bench/output.js';
import { evaluateTargets, type BenchResult, type MemoryPoint, type TaskRateRun } from '../../src/bench/results.js';
import { resolveSettings } from '../../src/bench/settings.js';
import { stageBreakdown, type StageTotal } from '../../src/bench/stages.js';
import { linearFit, summarize } from '../../src/bench/stats.js';
import { phaseBreakdown } from '../../src/bench/vm-start.js';

const KUASAR = 'kuasar-runc';
const BASELINE = 'runc';
const WASM = 'kuasar-wasm';
const VMM = 'kuasar-vmm';

/** PSS fixedKb + perPodKb per pod; private memory half of that. */
function memoryPoints(fixedKb: number, perPodKb: number, counts: number[]): MemoryPoint[] {
  return counts.map((pods) => {
    const pssKb = fixedKb + perPodKb * pods;
    return { pods, pssKb, rssKb: 2 * pssKb, privateKb: pssKb / 2, processes: 1, reads: [] };
  });
}

/** A complete result: kuasar 3x faster alone, 1.5x in parallel, 10x less memory at 50 pods. */
function sampleResult(): Omit<BenchResult, 'targets'> {
  const counts = [1, 5, 10, 20, 30, 50, 100];
  // PSS 40 000 KiB + 60 KiB/pod; private after GC 20 000 KiB + 50 KiB/pod.
  const kuasarMemory = memoryPoints(40_000, 60, counts).map((p) => ({
    ...p,
    afterGc: { pssKb: 30_000 + 50 * p.pods, privateKb: 20_000 + 50 * p.pods, reads: [] },
  }));
  const baselineMemory = memoryPoints(0, 8_000, counts);
  const singleK = [40, 50, 60];
  const singleB = [120, 150, 180];
  return {
    startedAt: '2026-01-02T03:04:05.678Z',
    finishedAt: '2026-01-02T03:20:00.000Z',
    complete: true,
    host: {
      cpus: 2,
      memoryGiB: 24,
      kernel: '6.1.0',
      node: '20.0.0',
      containerd: 'containerd v2.1.9',
      runc: 'runc version 1.1.5',
      loadStart: 1.5,
      loadEnd: 2,
    },
    settings: resolveSettings({}, '/tmp/out'),
    handlers: [
      { handler: KUASAR, side: 'kuasar', kind: 'runc' },
      { handler: BASELINE, side: 'baseline' },
    ],
    single: {
      [KUASAR]: {
        ms: singleK,
        summary: summarize(singleK),
        sandboxMs: [10, 12, 14],
        sandboxSummary: summarize([10, 12, 14]),
        failures: [],
      },
      [BASELINE]: {
        ms: singleB,
        summary: summarize(singleB),
        sandboxMs: [80, 100, 120],
        sandboxSummary: summarize([80, 100, 120]),
        failures: ['round 3: boom'],
      },
    },
    parallel: {
      [KUASAR]: { pods: 50, rounds: [{ wallMs: 2000, podMs: [900, 1000] }], wall: summarize([2000]), failures: [] },
      [BASELINE]: { pods: 50, rounds: [{ wallMs: 3000, podMs: [1500, 1600] }], wall: summarize([3000]), failures: [] },
    },
    stages: {
      [KUASAR]: {
        single: stageBreakdown(
          [
            {
              ms: 50,
              records: [
                { stage: 'oci.create', ms: 30, at: 0, sandbox: 's' },
                { stage: 'task.create', ms: 35, at: 1, sandbox: 's', rpc: 'create' },
              ],
            },
          ],
          { everyRpc: true },
        ),
      },
    },
    memory: {
      [KUASAR]: {
        idle: { ...memoryPoints(39_000, 0, [0])[0]!, afterGc: { pssKb: 29_000, privateKb: 19_000, reads: [] } },
        points: kuasarMemory,
        fit: linearFit(kuasarMemory.map((p) => ({ x: p.pods, y: p.pssKb }))),
        fitPrivate: linearFit(kuasarMemory.map((p) => ({ x: p.pods, y: p.afterGc.privateKb }))),
        helpers: [],
        failures: [],
      },
      [BASELINE]: {
        points: baselineMemory.map((p) => ({ ...p, pausePssKb: 100 * p.pods })),
        fit: linearFit(baselineMemory.map((p) => ({ x: p.pods, y: p.pssKb }))),
        helpers: [],
        failures: [],
      },
    },
  };
}

/**
 * sampleResult with the wasm kind measured too: 3 MiB of PSS per running container, private
 * memory (after GC) 4 MiB, 400 long-running containers per second and 250 short-lived ones.
 */
function withWasm(): Omit<BenchResult, 'targets'> {
  const result = sampleResult();
  const points = memoryPoints(45_000, 3_072, [1, 5, 10]).map((p) => ({
    ...p,
    afterGc: { pssKb: p.pssKb, privateKb: 40_000 + 4_096 * p.pods, reads: [] },
  }));
  result.handlers = [result.handlers[0]!, { handler: WASM, side: 'kuasar', kind: 'wasm' }, result.handlers[1]!];
  result.memory[WASM] = {
    points,
    fit: linearFit(points.map((p) => ({ x: p.pods, y: p.pssKb }))),
    fitPrivate: linearFit(points.map((p) => ({ x: p.pods, y: p.afterGc.privateKb }))),
    idle: memoryPoints(44_000, 0, [0])[0]!,
    quietMs: 4_200,
    helpers: [],
    failures: [],
  };
  result.taskRate = {
    handler: WASM,
    podId: 'pod1',
    taskSocket: '/run/kdev-aaaaaa/k/wasm/pod1/task.sock',
    concurrency: 8,
    longRunning: rateRun(500, [10, 20, 30], [onceEach('wasm.instantiate', false, 8, 9), onceEach('task.create', true, 10, 12)]),
    shortLived: rateRun(800, [15, 25], [onceEach('task.create', true, 10, 12), onceEach('task.wait', true, 14, 20)]),
    failures: [],
  };
  return result;
}

/** A Task API run of 200 containers, all of which succeeded in `wallMs`. */
function rateRun(wallMs: number, ms: number[], stages: StageTotal[]): TaskRateRun {
  return { containers: 200, wallMs, perSecond: 200 / (wallMs / 1000), ms, summary: summarize(ms), stages, failures: [] };
}

/** A stage met once per container. */
function onceEach(stage: string, rpc: boolean, meanMs: number, p90Ms: number): StageTotal {
  return { stage, rpc, perContainer: 1, meanMs, p90Ms, msPerContainer: meanMs };
}

test("targets are judged against the issue's goals, with a note on what dominates a miss", () => {
  const targets = evaluateTargets(sampleResult());
  assert.deepEqual(
    targets.map((t) => t.status),
    ['met', 'not met', 'met', 'met', 'not met', 'met', 'not measured', 'not measured', 'not measured'],
  );
  assert.equal(targets[0]?.value, 3);
  assert.equal(targets[1]?.value, 1.5);
  assert.match(targets[1]?.note ?? '', /oci\.create in task\.create \(60%\)/);
  // 400 000 KiB of shims against 43 000 KiB of kuasard.
  assert.ok(Math.abs((targets[2]?.value ?? 0) - 400_000 / 43_000) < 1e-9);
  assert.match(targets[3]?.title ?? '', /PSS at 100 pods/);
  // No pod: 19 000 KiB private after GC, above 16 MiB.
  assert.equal(targets[4]?.value, 19_000);
  assert.equal(targets[4]?.measured, '18.6 MiB (28.3 MiB PSS): 1.16x the goal');
  assert.match(targets[4]?.note ?? '', /read after the run's earlier parts/);
  assert.ok(Math.abs((targets[5]?.value ?? 0) - 50) < 1e-6, 'the marginal cost is the slope of private memory after GC');
  assert.match(
    targets[5]?.measured ?? '',
    /^50\.0 KiB\/pod of private memory after GC \(r² 1\.00\): 1\.00x the goal; PSS as found 60\.0 KiB\/pod \(r² 1\.00\); baseline PSS 8000\.0 KiB\/pod$/,
  );
});

test('a target whose figures were not taken is "not measured"', () => {
  const result = sampleResult();
  result.parallel = { [KUASAR]: { ...result.parallel[KUASAR]!, pods: 10 }, [BASELINE]: { ...result.parallel[BASELINE]!, pods: 10 } };
  result.memory = {};
  const statuses = evaluateTargets(result).map((t) => t.status);
  assert.deepEqual(statuses, ['met', ...Array<string>(8).fill('not measured')]);
});

test('a memory target is missed when kuasard costs more than 1/8 of the shims, or 50 KiB per pod', () => {
  const result = sampleResult();
  const heavy = memoryPoints(60_000, 150, [1, 50]);
  result.memory[KUASAR] = { points: heavy, fit: linearFit(heavy.map((p) => ({ x: p.pods, y: p.pssKb }))), helpers: [], failures: [] };
  const [, , memory, , , marginal] = evaluateTargets(result);
  assert.equal(memory?.status, 'not met');
  assert.match(memory?.note ?? '', /fixed cost/);
  assert.equal(marginal?.status, 'not met');
});

test("the wasm targets: Task API rates above 330/s, and at most 5 MB of kuasard's memory per running container", () => {
  const targets = evaluateTargets(withWasm());
  assert.equal(targets.length, 9);
  const [long, short, memory] = targets.slice(6);
  assert.deepEqual([long?.status, short?.status, memory?.status], ['met', 'not met', 'met']);
  assert.deepEqual([long?.value, short?.value], [400, 250]);
  assert.ok(Math.abs((memory?.value ?? 0) - 4096) < 1e-6, "the slope of kuasard's private memory after GC");
  assert.match(long?.title ?? '', /long-running containers started per second through the Task API \(Create \+ Start, 8 in flight\)/);
  assert.equal(long?.goal, "> 330/s (containerd's runwasi wasmtime shim)");
  assert.equal(long?.measured, '400.0/s (200 containers in 500 ms; per container p50 20.0 ms): 1.21x the goal');
  assert.equal(short?.note, 'most kuasard time per container: task.wait (14.0 ms)');
  assert.equal(memory?.goal, '<= 5 MB (4883 KiB)');
  assert.equal(
    memory?.measured,
    '4096.0 KiB/container of private memory after GC (r² 1.00): 0.84x the goal; PSS as found 3072.0 KiB/container (r² 1.00)',
  );
  // The runc targets are judged on the runc handler alone, whatever else was measured.
  assert.deepEqual(
    targets.slice(0, 6).map((t) => t.status),
    ['met', 'not met', 'met', 'met', 'not met', 'met'],
  );
});

test('a wasm container of 4900 KiB misses 5 MB, judged on PSS without after-GC readings; a rate with failures is not measured, and says why', () => {
  const result = withWasm();
  const points = memoryPoints(45_000, 4_900, [1, 10]);
  result.memory[WASM] = { points, fit: linearFit(points.map((p) => ({ x: p.pods, y: p.pssKb }))), helpers: [], failures: [] };
  result.taskRate!.longRunning = { containers: 30, ms: [5], failures: ['long-7: wasm module /sleep.wasm: boom'] };
  const [long, , memory] = evaluateTargets(result).slice(6);
  assert.equal(memory?.status, 'not met');
  assert.match(memory?.measured ?? '', /^4900\.0 KiB\/container of PSS \(r² 1\.00\): 1\.00x the goal$/);
  assert.match(memory?.note ?? '', /adds 4\.79 MiB to kuasard/);
  assert.equal(long?.status, 'not measured');
  assert.equal(long?.note, '1 failure(s), first: long-7: wasm module /sleep.wasm: boom');

  result.taskRate = { handler: '', skipped: 'the wasm kind is not measured in this run', concurrency: 8, failures: [] };
  assert.deepEqual(
    evaluateTargets(result)
      .slice(6, 8)
      .map((t) => t.status),
    ['not measured', 'not measured'],
  );
});

test('the Markdown summary shows the Task API runs, their kuasard stages, and what wasm memory means', () => {
  const result = { ...withWasm(), targets: evaluateTargets(withWasm()) };
  const md = renderMarkdown(result, []);
  assert.match(md, /one long-running container each: busybox `sleep 3600`, or for the wasm kind `\/sleep\.wasm`/);
  assert.match(md, /^## wasm containers through the Task API$/m);
  assert.match(md, /one `kuasar-wasm` pod \(`\/run\/kdev-aaaaaa\/k\/wasm\/pod1\/task\.sock`\), .* 8 containers in flight/);
  assert.match(
    md,
    /\| long-running: Create \+ Start \(`\/sleep\.wasm`\) \| 200 \| 500 \| 400\.0 \| 1\.21x \| 20\.0 \| 28\.0 \| 30\.0 \| 0 \|/,
  );
  assert.match(md, /\| short-lived: Create, Start, Wait, Delete \(`\/hello\.wasm`, exit 0\) \| 200 \| 800 \| 250\.0 \| 0\.76x \|/);
  assert.match(
    md,
    /### kuasard's stages, long-running run\n\n[^\n]+\n\n[^\n]+\n[^\n]+\n\| `task\.create` \| RPC \| 1\.00 \| 10\.0 \| 12\.0 \| 10\.0 \|\n\| `wasm\.instantiate` \| step inside an RPC \|/,
  );
  assert.match(
    md,
    /\| wasm kind, short-lived containers per second .* \| > 330\/s .* \| 250\.0\/s .* \| \*\*not met\*\*: most kuasard time per container: task\.wait/,
  );
  assert.match(md, /The wasm kind's containers run inside kuasard .* the memory of one running wasm container/);
  assert.match(md, /- kuasar-wasm: kuasard with no pod \(read once its memory had stopped moving, after 4 s\): 43\.0 MiB PSS/);

  const skipped = renderMarkdown(
    { ...result, taskRate: { handler: '', skipped: 'the wasm kind is not measured in this run', concurrency: 8, failures: [] } },
    [],
  );
  assert.match(skipped, /## wasm containers through the Task API\n\nSkipped: the wasm kind is not measured in this run\./);
  const failed = renderMarkdown({ ...result, taskRate: { ...result.taskRate!, failures: ['remove pod pod1: gone'] } }, []);
  assert.match(failed, /Failures setting up or removing the pod and its containers: remove pod pod1: gone/);
});

test("the Markdown summary shows the appkernel pods' own processes apart, and one pod's cost beside gVisor's figure", async () => {
  const result = sampleResult();
  const APPKERNEL = 'kuasar-appkernel';
  result.handlers = [result.handlers[0]!, { handler: APPKERNEL, side: 'kuasar', kind: 'appkernel' }, result.handlers[1]!];
  const points = memoryPoints(40_000, 30, [1, 10]).map((p) => ({
    ...p,
    podProcesses: {
      pssKb: 20_480 * p.pods,
      pssByMapping: { anonymousKb: 18_432 * p.pods, executableAnonymousKb: 0, fileKb: 2_048 * p.pods },
      privateKb: 14_336 * p.pods,
      processes: 5 * p.pods,
      pods: p.pods,
    },
  }));
  result.memory[APPKERNEL] = {
    points,
    fit: linearFit(points.map((p) => ({ x: p.pods, y: p.pssKb }))),
    podCost: {
      pods: 10,
      processesPssKb: 20_480,
      processesPssByMapping: { anonymousKb: 18_432, executableAnonymousKb: 0, fileKb: 2_048 },
      processesPrivateKb: 14_336,
      kuasardKb: 30,
      pssKb: 20_510,
      privateKb: 14_366,
    },
    helpers: ['7 /x/fd-keeper /run/k.sock', '8 /usr/bin/runsc --root /r wait a', '9 /usr/bin/runsc --root /r wait b'],
    failures: [],
  };
  const md = renderMarkdown({ ...result, targets: evaluateTargets(result) }, []);
  assert.match(md, /Each appkernel pod keeps processes of its own on the host \(in a cgroup of its own\): the gVisor sandbox/);
  // Side by side: the appkernel pod's processes and kuasard's slope; the runc kind's kuasard slope; the baseline's pause and shim.
  assert.match(md, /### Memory per pod, side by side/);
  assert.match(md, /\| kuasar-appkernel \| appkernel: gVisor sandbox, gofers, stubs \| 20\.00 \| 0\.03 \(kuasard\) \| 20\.03 \|/);
  assert.match(md, /\| kuasar-runc \| none \| 0\.00 \| 0\.05 \(kuasard\) \| 0\.05 \|/);
  assert.match(md, /\| runc \| pause \| 0\.10 \| 7\.81 \(shim\) \| 7\.91 \|/);
  // The wasm kind's containers are in kuasard's slope.
  const withWasmToo = withWasm();
  withWasmToo.handlers.splice(1, 0, result.handlers[1]!);
  withWasmToo.memory[APPKERNEL] = result.memory[APPKERNEL]!;
  assert.match(
    renderMarkdown({ ...withWasmToo, targets: [] }, []),
    /\| kuasar-wasm \| none: its containers run inside kuasard \| 0\.00 \| 4\.00 \(kuasard\) \| 4\.00 \|/,
  );
  assert.match(md, /\| kuasar-appkernel: pods' processes PSS \| kuasar-appkernel: pods' processes private \|/);
  assert.match(md, /\| 10 \| [^\n]*\| 200\.0 \| 140\.0 \|/);
  assert.match(
    md,
    /- kuasar-appkernel: memory per pod \*\*20\.0 MiB PSS \(21\.0 MB\)\*\*, 14\.0 MiB private: its own processes 20\.0 MiB PSS, 14\.0 MiB private \(average over the 10 pods of the fullest point; their PSS by kind of mapping: anonymous 18\.0 MiB, anonymous and executable \(code generated as it runs\) 0\.0 MiB, file pages 2\.0 MiB, shared by the processes that map the same files\), plus kuasard's 30\.0 KiB per pod \(its marginal cost above\); gVisor's own density figures: about 23\.7 MB of host memory per empty sandbox\./,
  );
  assert.match(md, /counted in its figures: `\/x\/fd-keeper \/run\/k\.sock`; 2 × `runsc`, e\.g\. `\/usr\/bin\/runsc --root \/r wait a`\./);
  // The targets stay the runc kind's.
  assert.ok(evaluateTargets(result).every((t) => !t.title.includes('appkernel')));
  const memoryChart = benchCharts({ ...result, targets: [] }).find((c) => c.file === 'memory.svg');
  assert.match(JSON.stringify(memoryChart?.spec), /kuasar-appkernel: PSS of the pods' own processes/);
});

/** sampleResult with the vmm kind measured too: fewer rounds and smaller batches, TCG, a QEMU of 150 MiB per pod. */
function withVmm(): Omit<BenchResult, 'targets'> {
  const result = sampleResult();
  result.settings = resolveSettings({ kinds: 'runc,vmm' }, '/tmp/out');
  result.handlers = [result.handlers[0]!, { handler: VMM, side: 'kuasar', kind: 'vmm' }, result.handlers[1]!];
  result.single[VMM] = {
    ms: [9000, 11000],
    summary: summarize([9000, 11000]),
    sandboxMs: [7000, 9000],
    sandboxSummary: summarize([7000, 9000]),
    failures: [],
  };
  result.parallel[VMM] = { pods: 10, rounds: [{ wallMs: 60_000, podMs: [50_000, 55_000] }], wall: summarize([60_000]), failures: [] };
  const phases = phaseBreakdown(
    [
      {
        ms: 10_000,
        records: [
          { stage: 'vmm.qemu-start', ms: 400, at: 0, sandbox: 's' },
          { stage: 'vmm.agent-start', ms: 4_000, at: 7_000, sandbox: 's' },
          { stage: 'vmm.guest-boot', ms: 6_500, at: 7_000, sandbox: 's' },
          { stage: 'vmm.agent-ready', ms: 7_000, at: 7_000, sandbox: 's' },
        ],
      },
    ],
    [
      { phase: 'VMM start', stages: ['vmm.qemu-start'] },
      { phase: 'firmware', stages: ['vmm.agent-ready'], minus: ['vmm.guest-boot'] },
      { phase: 'agent ready', stages: ['vmm.agent-start'] },
      { phase: 'container started', stages: ['task.start'] },
    ],
  );
  result.vmStarts = { [VMM]: { accelerators: { tcg: 3 }, single: phases!, parallel: phases! } };
  const points = memoryPoints(40_000, 20, [1, 5, 10]).map((p) => ({
    ...p,
    podProcesses: {
      pssKb: 153_600 * p.pods,
      pssByMapping: { anonymousKb: 102_400 * p.pods, executableAnonymousKb: 40_960 * p.pods, fileKb: 10_240 * p.pods },
      privateKb: 150_000 * p.pods,
      processes: p.pods,
      pods: p.pods,
    },
  }));
  result.memory[VMM] = {
    points,
    fit: linearFit(points.map((p) => ({ x: p.pods, y: p.pssKb }))),
    podCost: {
      pods: 10,
      processesPssKb: 153_600,
      processesPssByMapping: { anonymousKb: 102_400, executableAnonymousKb: 40_960, fileKb: 10_240 },
      processesPrivateKb: 150_000,
      kuasardKb: 20,
      pssKb: 153_620,
      privateKb: 150_020,
    },
    helpers: [],
    failures: [],
  };
  return result;
}

test("the Markdown summary of a run with the vmm kind: its fewer rounds and why, RunPodSandbox apart, its start phase by phase under TCG beside Kata's figures, and its memory per pod beside the runc kind's", () => {
  const result = withVmm();
  const md = renderMarkdown({ ...result, targets: evaluateTargets(result) }, []);
  assert.match(md, /^## Pod start, one at a time \(50 rounds per handler; kuasar-vmm: 20\)$/m);
  assert.match(md, /^Fewer for kuasar-vmm \(its kind's limits on a run's default counts\): under TCG on 2 cores a VM pod takes /m);
  assert.match(md, /\| kuasar-vmm \| 8000\.0 \| 8800\.0 \| 2000\.0 \| 2000\.0 \|/, 'RunPodSandbox p50/p90, then the container');
  assert.match(md, /\| runc \| 100\.0 \| 116\.0 \| 50\.0 \| 58\.0 \|/);
  assert.match(md, /^## 50 pods in parallel \(5 rounds per handler; kuasar-vmm: 10 pods, 3 rounds\)$/m);
  assert.match(md, /\| kuasar-vmm \| 10 \| 1 \| 60000\.0 \|/);
  assert.doesNotMatch(md, /Baseline \/ kuasar-vmm: wall time/, 'batches of different sizes have no ratio');
  assert.match(md, /^## A VM pod's start, phase by phase: kuasar-vmm$/m);
  assert.match(
    md,
    /Accelerator, as kuasard logged each VM that came up in this run: \*\*TCG\*\* \(3 VMs\)\. TCG is QEMU's software emulation/,
  );
  assert.match(md, /\| VMM start \| `vmm\.qemu-start` \| 400\.0 \| 400\.0 \| 4\.0% \|/);
  assert.match(md, /\| firmware \| `vmm\.agent-ready` − `vmm\.guest-boot` \| 500\.0 \| 500\.0 \| 5\.0% \|/);
  assert.match(md, /\| container started \(no record of it\) \| `task\.start` \| 0\.0 \|/);
  assert.match(md, /\| the rest: containerd's CRI work [^|]* \| end to end − the phases \| 5100\.0 \| 5100\.0 \| 51\.0% \|/);
  assert.match(md, /\| \*\*the pod's start, end to end\*\* \| \| 10000\.0 \| 10000\.0 \| 100% \|/);
  assert.match(md, /Inside the parallel batches \(1 pods, 10 at once/);
  assert.match(
    md,
    /For reference: Kata Containers' CI baselines, on KVM hosts \(theirs, a reference, not a target here\): about 0\.39 s \(Cloud Hypervisor\) and 0\.71 s \(QEMU\)/,
  );
  assert.match(
    md,
    /Each vmm pod keeps processes of its own on the host \(kuasard's children, by the name each runs under\): the VM's QEMU process/,
  );
  assert.match(md, /\| kuasar-vmm \| vmm: QEMU \(the VM\) \| 150\.00 \| 0\.02 \(kuasard\) \| 150\.02 \|/);
  assert.match(md, /\| kuasar-runc \| none \| 0\.00 \| 0\.05 \(kuasard\) \| 0\.05 \|/);
  assert.match(
    md,
    /- kuasar-vmm: memory per pod \*\*150\.0 MiB PSS \(157\.3 MB\)\*\*.*anonymous 100\.0 MiB, anonymous and executable \(code generated as it runs\) 40\.0 MiB, file pages 10\.0 MiB.*; Kata Containers' CI baselines, on KVM hosts \(theirs, a reference, not a target here\): about 122-127 MB per container/,
  );
  // The targets stay the runc kind's.
  assert.ok(evaluateTargets(result).every((t) => !t.title.includes('vmm')));
  assert.deepEqual(
    benchCharts({ ...result, targets: [] }).find((c) => c.file === 'parallel-wall.svg')?.title,
    'Parallel batches: wall time of each round',
  );
  assert.match(
    JSON.stringify(benchCharts({ ...result, targets: [] }).find((c) => c.file === 'parallel-wall.svg')?.spec),
    /batch of 50 pods \(kuasar-vmm 10\) started at once/,
  );
  // A VM's seconds beside a container's milliseconds: the latency chart's axis is logarithmic; without the VMs it is not.
  const latencyAxis = (r: Omit<BenchResult, 'targets'>) =>
    JSON.stringify(benchCharts({ ...r, targets: [] }).find((c) => c.file === 'latency-single.svg')?.spec);
  assert.match(latencyAxis(result), /"scale":\{"type":"log"\}/);
  assert.doesNotMatch(latencyAxis(sampleResult()), /"type":"log"/);
  // No VM came up: the report says the accelerator is not known.
  const none = renderMarkdown({ ...result, vmStarts: { [VMM]: { accelerators: {} } }, targets: [] }, []);
  assert.match(none, /Accelerator: not found in kuasard's log/);
});

test('the Markdown summary has the targets, every table and the chart links', () => {
  const result = { ...sampleResult(), targets: evaluateTargets(sampleResult()) };
  const md = renderMarkdown(result, [{ file: 'memory.svg', title: 'Memory' }]);
  assert.match(md, /^# kuasar benchmark, 2026-01-02T03:04:05\.678Z$/m);
  assert.match(
    md,
    /\| runc kind, one pod at a time, p50 \| >= 2x faster than the baseline \| kuasar 50\.0 ms, baseline 150\.0 ms: 3\.00x \| \*\*met\*\* \|/,
  );
  assert.match(md, /\| kuasar-runc \| 3 \| 40\.0 \| 50\.0 \| 58\.0 \| 59\.8 \| 60\.0 \| 0 \|/);
  assert.match(md, /Baseline \/ kuasar-runc: p50 3\.00x/);
  assert.match(md, /Baseline \/ kuasar-runc: wall time \(median\) 1\.50x/);
  assert.match(md, /\| &nbsp;&nbsp;`oci\.create` \| task\.create \|/);
  assert.match(md, /Largest share of its own: \*\*oci\.create in task\.create\*\*/);
  // 50 pods: kuasard PSS 43 000 KiB, private after GC 22 500; shims PSS 400 000, private 200 000; pause 5 000.
  assert.match(
    md,
    /\| pods \| kuasar-runc: kuasard PSS \| kuasar-runc: kuasard private after GC \| runc: shims PSS \| runc: shims private \| PSS shims \/ kuasar-runc \| runc: pause PSS \|/,
  );
  assert.match(md, /\| 50 \| 42\.0 \| 22\.0 \| 390\.6 \| 195\.3 \| 9\.30x \| 4\.9 \|/);
  assert.match(
    md,
    /kuasar-runc: marginal cost by least-squares fit: PSS \*\*60\.0 KiB per pod\*\*, fixed 39\.1 MiB \(r² 1\.000\); private memory after GC \*\*50\.0 KiB per pod\*\*/,
  );
  assert.match(
    md,
    /kuasar-runc: kuasard with no pod: 38\.1 MiB PSS, 19\.0 MiB private, 76\.2 MiB RSS; after GC 28\.3 MiB PSS, 18\.6 MiB private\./,
  );
  assert.match(md, /no child process other than containers/);
  assert.match(md, /Failures of runc: round 3: boom/);
  assert.match(md, /!\[Memory\]\(memory\.svg\)/);
  assert.doesNotMatch(md, /Incomplete run/);
  assert.match(
    renderMarkdown({ ...result, complete: false, incomplete: 'interrupted by SIGINT' }, []),
    /\*\*Incomplete run\*\*: interrupted by SIGINT/,
  );
});

test('charts are made for what was measured and render to SVG without a browser', async () => {
  const result = { ...sampleResult(), targets: [] };
  const charts = benchCharts(result);
  assert.deepEqual(
    charts.map((c) => c.file),
    ['latency-single.svg', 'latency-parallel.svg', 'parallel-wall.svg', 'stages.svg', 'memory.svg'],
  );
  for (const chart of charts) {
    const svg = await renderSvg(chart.spec);
    assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/, chart.file);
    assert.match(svg, /<\/svg>$/, chart.file);
  }
  assert.deepEqual(benchCharts({ ...result, single: {}, parallel: {}, stages: {}, memory: {} }), []);

  const wasmCharts = benchCharts({ ...withWasm(), targets: [] });
  const taskRate = wasmCharts.find((c) => c.file === 'task-rate.svg');
  assert.ok(taskRate, 'a chart of the Task API rates');
  assert.match(await renderSvg(taskRate.spec), /<\/svg>$/);
});

test('cumulative points rise to 1 per handler in ascending order', () => {
  assert.deepEqual(cumulativePoints([{ handler: 'h', values: [30, 10, 20, 40] }]), [
    { handler: 'h', ms: 10, fraction: 0.25 },
    { handler: 'h', ms: 20, fraction: 0.5 },
    { handler: 'h', ms: 30, fraction: 0.75 },
    { handler: 'h', ms: 40, fraction: 1 },
  ]);
});

test('the summary a run writes links every chart it wrote and no other, the stages and Task API rates included', async () => {
  const out = mkdtempSync(join(tmpdir(), 'bench-out-'));
  try {
    const result = withWasm();
    const dir = await writeResults({ ...result, targets: evaluateTargets(result) }, out, (line) => assert.fail(line));
    const summary = readFileSync(join(dir, 'summary.md'), 'utf8');
    const linked = [...summary.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)].map((m) => m[1]);
    const written = readdirSync(dir).filter((file) => file.endsWith('.svg'));
    assert.deepEqual(linked.sort(), written.sort());
    for (const chart of ['stages.svg', 'task-rate.svg']) assert.ok(written.includes(chart), chart);
    assert.ok(existsSync(join(out, 'latest', 'summary.md')));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("a run's directory is named by its start time", () => {
  assert.equal(runDirName('2026-01-02T03:04:05.678Z'), '2026-01-02T03-04-05Z');
});

test("the report sets a kind's warm and cold starts side by side, says how each was made, and what an idle pool VM costs", () => {
  const base = sampleResult();
  const warm = { handler: `${VMM} warm`, runtimeHandler: VMM, side: 'kuasar' as const, kind: 'vmm', pool: 'warm' as const };
  const cold = { handler: `${VMM} cold`, runtimeHandler: VMM, side: 'kuasar' as const, kind: 'vmm', pool: 'cold' as const };
  const single = (ms: number[], sandboxMs: number[], failures: string[] = []) => ({
    ms,
    summary: summarize(ms),
    sandboxMs,
    sandboxSummary: summarize(sandboxMs),
    failures,
  });
  const idle = {
    ...memoryPoints(40_000, 0, [0])[0]!,
    idlePool: { members: 2, pssKb: 2 * 280 * 1024, rssKb: 2 * 320 * 1024, privateKb: 2 * 250 * 1024 },
  };
  const result: Omit<BenchResult, 'targets'> = {
    ...base,
    settings: resolveSettings({ kinds: 'runc,vmm' }, '/tmp/out'),
    handlers: [base.handlers[0]!, warm, cold, base.handlers[1]!],
    single: {
      ...base.single,
      [warm.handler]: single([4_000, 5_000, 6_000], [1_000, 1_200, 1_400], ['pod p9 started cold, not warm: left out of the series']),
      [cold.handler]: single([12_000, 13_000, 14_000], [9_000, 10_000, 11_000]),
    },
    memory: {
      ...base.memory,
      [warm.handler]: {
        idle,
        idlePoolCpu: { members: 2, windowMs: 10_000, percentPerMember: 3.4 },
        points: [],
        helpers: [],
        failures: [],
      },
    },
  };
  const md = renderMarkdown({ ...result, targets: evaluateTargets(result) }, []);
  assert.match(md, /### vmm pods, warm and cold, side by side/);
  assert.match(md, /keeps a warm pool of 2 VMs for the vmm kind/);
  assert.match(md, /`kuasar-vmm cold`: a pod whose memory limit is 257 MiB, 1 MiB more than a warm VM's/);
  assert.match(md, /\| kuasar-vmm warm \| 3 \| 5000\.0 \| .* \| 1200\.0 \| .* \| 3800\.0 \|/);
  assert.match(
    md,
    /cold \/ warm, end to end p50: \*\*2\.60x\*\*; RunPodSandbox p50 8\.33x; warm \/ kuasar-runc, RunPodSandbox p50: \*\*100\.00x\*\*/,
  );
  assert.match(md, /Fewer for kuasar-vmm warm and kuasar-vmm cold \(its kind's limits/);
  assert.match(md, /Failures of kuasar-vmm warm: pod p9 started cold, not warm/);
  assert.match(md, /per idle VM .*2 idle VMs\) \*\*280\.0 MiB PSS\*\*, 320\.0 MiB RSS, 250\.0 MiB private, and \*\*3\.4% of one CPU\*\*/);
  assert.match(md, /\| vmm kind, one pod at a time, p50: a warm VM pod .* \| warm 5000\.0 ms, cold 13000\.0 ms: 2\.60x \| \*\*not met\*\*/);
  assert.match(
    md,
    /\| vmm kind, one pod at a time, RunPodSandbox p50: .* \| warm 1200\.0 ms, runc kind 12\.0 ms: 100\.00x \| \*\*not met\*\* \|/,
  );
});
