import assert from 'node:assert/strict';
import { test } from 'node:test';
import { findManagementPlane, hasGcHook, hasSettled, nodeOptionsWithGcHook, parseSmapsRollup } from '../../src/bench/memory.js';
import { inPool } from '../../src/bench/pods.js';
import { chooseHandlers, memoryOrder, oneSeriesPerKind, roundOrder } from '../../src/bench/handlers.js';
import { runtimeHandlerOf } from '../../src/bench/results.js';
import { countsFor, FULL_DEFAULTS, QUICK_DEFAULTS, resolveSettings } from '../../src/bench/settings.js';
import type { HostProcess } from '../../src/devenv/processes.js';
import { idleWorkload } from '../../src/devenv/workloads.js';

test('settings: a full run by default, quick defaults with --quick, explicit options always win', () => {
  const full = resolveSettings({}, '/out');
  assert.equal(full.singleRounds, FULL_DEFAULTS.singleRounds);
  assert.deepEqual(full.memoryPods, [1, 5, 10, 20, 30, 50, 100]);
  assert.deepEqual(full.parts, ['single', 'parallel', 'memory', 'task-rate']);
  assert.deepEqual([full.taskLongRunning, full.taskShortLived, full.taskConcurrency], [1000, 1000, 8]);
  assert.deepEqual(full.kinds, []);
  assert.equal(full.outDir, '/out');

  const quick = resolveSettings({ quick: true, rounds: '7' }, '/out');
  assert.equal(quick.singleRounds, 7);
  assert.equal(quick.parallelPods, QUICK_DEFAULTS.parallelPods);
  assert.deepEqual([quick.taskLongRunning, quick.taskShortLived, quick.taskConcurrency], [30, 30, 8]);
  const tasks = resolveSettings({ quick: true, taskLong: '50', taskShort: '7', taskConcurrency: '1' }, '/out');
  assert.deepEqual([tasks.taskLongRunning, tasks.taskShortLived, tasks.taskConcurrency], [50, 7, 1]);

  const custom = resolveSettings(
    { kinds: 'runc, wasm', parts: 'memory,task-rate,single', memoryPods: '10,1,10', settle: '0', out: '/x' },
    '/out',
  );
  assert.deepEqual(custom.kinds, ['runc', 'wasm']);
  assert.deepEqual(custom.parts, ['single', 'memory', 'task-rate'], 'parts run in their fixed order');
  assert.deepEqual(custom.memoryPods, [1, 10], 'counts sorted, repeats dropped');
  assert.equal(custom.settleMs, 0);
  assert.equal(custom.outDir, '/x');
});

test("settings: a kind's run limits cap the defaults of its handler (full and quick), an explicit option wins, other handlers keep the run's counts", () => {
  const full = resolveSettings({ kinds: 'runc,vmm' }, '/out');
  assert.equal(full.singleRounds, FULL_DEFAULTS.singleRounds);
  assert.deepEqual(Object.keys(full.kindCounts), ['vmm']);
  assert.deepEqual(countsFor(full, 'vmm'), { singleRounds: 20, parallelPods: 10, parallelRounds: 3, memoryPods: [1, 5, 10] });
  assert.match(full.kindCounts['vmm']?.why ?? '', /TCG/);
  assert.deepEqual(countsFor(full, 'runc'), {
    singleRounds: 50,
    parallelPods: 50,
    parallelRounds: 5,
    memoryPods: [1, 5, 10, 20, 30, 50, 100],
  });
  assert.deepEqual(countsFor(full, undefined), countsFor(full, 'runc'), 'the baseline runs the run counts');

  const quick = resolveSettings({ kinds: 'vmm', quick: true }, '/out');
  assert.deepEqual(countsFor(quick, 'vmm'), { singleRounds: 5, parallelPods: 10, parallelRounds: 2, memoryPods: [1, 5, 10] });

  const explicit = resolveSettings({ kinds: 'vmm', rounds: '2', parallelPods: '3', memoryPods: '1,40' }, '/out');
  assert.deepEqual(countsFor(explicit, 'vmm'), { singleRounds: 2, parallelPods: 3, parallelRounds: 3, memoryPods: [1, 40] });

  // A kind asked for without limits, or a default run (vmm only runs when asked for), has none.
  assert.deepEqual(resolveSettings({}, '/out').kindCounts, {});
  assert.deepEqual(resolveSettings({ kinds: 'runc' }, '/out').kindCounts, {});
  // Memory points above the cap are left out.
  const limits = { singleRounds: 1, parallelPods: 1, parallelRounds: 1, memoryPods: 7, why: 'tiny' };
  const capped = resolveSettings({ kinds: 'big,small' }, '/out', (kind) => (kind === 'big' ? limits : undefined));
  assert.deepEqual(Object.keys(capped.kindCounts), ['big']);
  assert.deepEqual(countsFor(capped, 'big'), { singleRounds: 1, parallelPods: 1, parallelRounds: 1, memoryPods: [1, 5] });
});

test('settings: malformed values are errors naming the option', () => {
  assert.throws(() => resolveSettings({ rounds: '0' }, '/out'), /--rounds: "0" is not an integer >= 1/);
  assert.throws(() => resolveSettings({ parallelPods: 'many' }, '/out'), /--parallel-pods/);
  assert.throws(() => resolveSettings({ memoryPods: '1,2.5' }, '/out'), /--memory-pods/);
  assert.throws(() => resolveSettings({ parts: 'single,speed' }, '/out'), /--parts: unknown part "speed"/);
  assert.throws(() => resolveSettings({ kinds: ' , ' }, '/out'), /--kinds/);
  assert.throws(() => resolveSettings({ taskConcurrency: '0' }, '/out'), /--task-concurrency: "0" is not an integer >= 1/);
  assert.throws(() => resolveSettings({ taskLong: '-3' }, '/out'), /--task-long/);
  assert.throws(() => resolveSettings({ taskShort: '1e2x' }, '/out'), /--task-short/);
});

test("handlers: kuasar's requested kinds (by default every kind served), then the baseline; an unserved kind is an error", () => {
  const handlers = { baseline: 'runc', kuasar: { runc: 'kuasar-runc', wasm: 'kuasar-wasm' } };
  assert.deepEqual(chooseHandlers(handlers, []), [
    { handler: 'kuasar-runc', side: 'kuasar', kind: 'runc' },
    { handler: 'kuasar-wasm', side: 'kuasar', kind: 'wasm' },
    { handler: 'runc', side: 'baseline' },
  ]);
  assert.deepEqual(
    chooseHandlers(handlers, ['wasm']).map((h) => h.handler),
    ['kuasar-wasm', 'runc'],
  );
  assert.throws(() => chooseHandlers(handlers, ['vmm']), /vmm not served by this kuasard \(it serves: runc, wasm\)/);
  const withVmm = { ...handlers, kuasar: { ...handlers.kuasar, vmm: 'kuasar-vmm' } };
  assert.deepEqual(
    chooseHandlers(withVmm, []).map((h) => h.handler),
    ['kuasar-runc', 'kuasar-wasm', 'runc'],
    'a kind benchmarked only when asked for is left out by default',
  );
  assert.deepEqual(
    chooseHandlers(withVmm, ['vmm']),
    [
      { handler: 'kuasar-vmm warm', runtimeHandler: 'kuasar-vmm', side: 'kuasar', kind: 'vmm', pool: 'warm' },
      { handler: 'kuasar-vmm cold', runtimeHandler: 'kuasar-vmm', side: 'kuasar', kind: 'vmm', pool: 'cold' },
      { handler: 'runc', side: 'baseline' },
    ],
    'a kind with a warm pool: two series on its one handler',
  );
});

test('a kind with a warm pool takes part in the parallel part with its cold series, in the memory part with its warm one', () => {
  const handlers = chooseHandlers({ baseline: 'runc', kuasar: { runc: 'kuasar-runc', vmm: 'kuasar-vmm' } }, ['runc', 'vmm']);
  assert.deepEqual(
    oneSeriesPerKind(handlers, 'cold').map((h) => h.handler),
    ['kuasar-runc', 'kuasar-vmm cold', 'runc'],
  );
  assert.deepEqual(
    oneSeriesPerKind(handlers, 'warm').map((h) => h.handler),
    ['kuasar-runc', 'kuasar-vmm warm', 'runc'],
  );
  assert.deepEqual(handlers.map(runtimeHandlerOf), ['kuasar-runc', 'kuasar-vmm', 'kuasar-vmm', 'runc']);
});

test("each kind's idle workload, from its registration, on the local images: busybox sleep for runc (and the baseline), appkernel and vmm, sleep.wasm for wasm", () => {
  assert.deepEqual(idleWorkload('runc'), { image: 'kuasar.local/busybox:latest', command: ['sleep', '3600'] });
  assert.deepEqual(idleWorkload('wasm'), { image: 'kuasar.local/wasm-tests:latest', command: ['/sleep.wasm'] });
  assert.deepEqual(idleWorkload('appkernel'), { image: 'kuasar.local/busybox:latest', command: ['sleep', '3600'] });
  assert.deepEqual(idleWorkload('vmm'), { image: 'kuasar.local/busybox:latest', command: ['sleep', '3600'] });
  assert.throws(() => idleWorkload('quark'), /no kind "quark" is registered \(known kinds: runc, wasm, appkernel, vmm\)/);
});

test('memory is measured for the wasm kind last: its instances live in kuasard and leave memory behind', () => {
  const handlers = chooseHandlers({ baseline: 'runc', kuasar: { wasm: 'kuasar-wasm', runc: 'kuasar-runc' } }, ['wasm', 'runc']);
  assert.deepEqual(
    handlers.map((h) => h.handler),
    ['kuasar-wasm', 'kuasar-runc', 'runc'],
  );
  assert.deepEqual(
    memoryOrder(handlers).map((h) => h.handler),
    ['kuasar-runc', 'runc', 'kuasar-wasm'],
  );
});

test('rounds rotate the handler order so that each goes first as often', () => {
  assert.deepEqual(
    [0, 1, 2, 3].map((round) => roundOrder(['k', 'b'], round).join('')),
    ['kb', 'bk', 'kb', 'bk'],
  );
  assert.deepEqual(roundOrder(['a', 'b', 'c'], 4), ['b', 'c', 'a']);
});

test('a pool runs at most `limit` items at once and stops taking new ones once aborted', async () => {
  let running = 0;
  let peak = 0;
  const outcomes = await inPool([1, 2, 3, 4, 5], 2, async (n) => {
    running += 1;
    peak = Math.max(peak, running);
    await new Promise((resolve) => setTimeout(resolve, 5));
    running -= 1;
    if (n === 3) throw new Error('three');
    return n * 10;
  });
  assert.equal(peak, 2);
  assert.deepEqual(
    outcomes.map((o) => (o.status === 'fulfilled' ? o.value : (o.reason as Error).message)),
    [10, 20, 'three', 40, 50],
  );

  const abort = new AbortController();
  const partial = await inPool(
    [1, 2, 3],
    1,
    async (n) => {
      if (n === 1) abort.abort(new Error('stop'));
      return n;
    },
    abort.signal,
  );
  assert.deepEqual(
    partial.map((o) => o.status),
    ['fulfilled', 'rejected', 'rejected'],
  );
});

test('smaps_rollup: Pss, Rss and private memory in KiB', () => {
  const text = [
    '5581e000-7ffc1000 ---p 00000000 00:00 0  [rollup]',
    'Rss:               51200 kB',
    'Pss:               40960 kB',
    'Pss_Anon:          30000 kB',
    'Shared_Clean:      20000 kB',
    'Private_Clean:       200 kB',
    'Private_Dirty:     31000 kB',
    '',
  ].join('\n');
  assert.deepEqual(parseSmapsRollup(text), { pssKb: 40960, rssKb: 51200, privateKb: 31200 });
  assert.throws(() => parseSmapsRollup('Rss: 1 kB\n'), /no Pss line/);
});

test("the management plane: this environment's kuasard and shims, kuasard's non-container children", () => {
  const proc = (pid: number, ppid: number, cmdline: string, cgroup = '0::/', state = 'S'): HostProcess => ({
    pid,
    ppid,
    state,
    startTime: '1',
    cmdline,
    cgroups: [cgroup],
    namespaces: {},
  });
  const where = {
    kuasardConfig: '/run/kdev-aaaaaa/kuasard.toml',
    containerdSocket: '/run/kdev-aaaaaa/containerd.sock',
    cgroupName: 'kuasar-kdev-aaaaaa',
  };
  const processes = [
    proc(10, 1, 'node /w/dist/src/cli/kuasard.js --config /run/kdev-bbbbbb/kuasard.toml'), // another environment's
    proc(11, 1, 'node /w/dist/src/cli/kuasard.js --config /run/kdev-aaaaaa/kuasard.toml'),
    proc(12, 11, 'sleep 3600', '0::/kuasar-kdev-aaaaaa/pod1/c1'), // a container
    proc(13, 11, 'runc --root /x create c2'), // a helper (here: a runc call in flight)
    proc(14, 11, '[runc]', '0::/', 'Z'), // a zombie holds no memory
    proc(20, 1, '/usr/local/bin/containerd-shim-runc-v2 -namespace k8s.io -id p1 -address /run/kdev-aaaaaa/containerd.sock'),
    proc(21, 20, '/pause', '0::/kuasar-kdev-aaaaaa/p1'),
    proc(22, 20, 'sleep 3600', '0::/kuasar-kdev-aaaaaa/p1/c'),
    proc(30, 1, '/usr/local/bin/containerd-shim-runc-v2 -namespace k8s.io -id p9 -address /run/kdev-bbbbbb/containerd.sock'),
  ];
  const plane = findManagementPlane(processes, where);
  assert.equal(plane.kuasard?.pid, 11);
  assert.deepEqual(
    plane.kuasardHelpers.map((p) => p.pid),
    [13],
  );
  assert.deepEqual(
    plane.shims.map((p) => p.pid),
    [20],
  );
  assert.deepEqual(
    plane.pauses.map((p) => p.pid),
    [21],
  );
  assert.equal(findManagementPlane(processes.slice(0, 1), where).kuasard, undefined);
});

test('memory has settled once its last few steps were all small', () => {
  assert.equal(hasSettled([], 512, 3), false);
  assert.equal(hasSettled([80_000, 79_900, 79_800], 512, 3), false, 'too few reads');
  assert.equal(hasSettled([80_000, 79_900, 79_800, 79_700], 512, 3), true);
  assert.equal(hasSettled([80_000, 60_000, 50_000, 49_900, 49_950, 50_100], 512, 3), true, 'only the last steps count');
  assert.equal(hasSettled([80_000, 60_000, 50_000, 49_900, 49_950], 512, 3), false, 'a large step among the last ones');
  assert.equal(hasSettled([50_000, 50_512, 50_512, 50_512], 512, 3), false, 'a step of exactly the limit is not small');
});

test('the GC hook is preloaded through NODE_OPTIONS, after what is already there', () => {
  assert.match(nodeOptionsWithGcHook(undefined), /^--expose-gc --import \/\S+\/bench\/gc-hook\.js$/);
  assert.match(nodeOptionsWithGcHook('--max-old-space-size=100'), /^--max-old-space-size=100 --expose-gc --import \S+gc-hook\.js$/);
  assert.equal(hasGcHook(process.pid), false, 'this test process was not started with it');
});
