// The memory of a kind whose pods keep processes of their own (a gVisor sandbox, its gofers and
// stubs; a VM's QEMU): finding those processes by their cgroup or by their argument, and what one
// pod costs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { podProcessesOf } from '../../src/bench/kinds.js';
import { findManagementPlane, parseSmapsByMapping, podProcessGroups } from '../../src/bench/memory.js';
import { podMemoryCost } from '../../src/bench/pod-memory.js';
import type { MemoryPoint, MemoryResult } from '../../src/bench/results.js';
import { linearFit } from '../../src/bench/stats.js';
import type { HostProcess } from '../../src/devenv/processes.js';
import { sentryCgroupsPath } from '../../src/kinds/appkernel/sandbox.js';
import { vmName } from '../../src/kinds/vmm/sandbox.js';

function proc(pid: number, cgroups: string[], state = 'S'): HostProcess {
  return { pid, ppid: 1, state, startTime: '1', cmdline: 'runsc-sandbox', cgroups, namespaces: {} };
}

const SCOPE = { cgroupName: 'kuasar-kdev-abc', kuasardPid: 100 };

test("a pod's processes are found by the pod's own cgroup below the environment's, in any hierarchy", () => {
  const v1 = (path: string) => [`memory:${path}`, `name=systemd:${path}`, '::/'];
  const groups = podProcessGroups(
    [
      proc(10, v1('/kuasar-kdev-abc/kuasar-gvisor-p1')),
      proc(11, v1('/kuasar-kdev-abc/kuasar-gvisor-p1')),
      proc(12, ['::/kuasar-kdev-abc/kuasar-gvisor-p2/sub']), // cgroup v2, a cgroup below the pod's
      proc(13, v1('/kuasar-kdev-abc/kuasar-gvisor-p2'), 'Z'), // a zombie holds no memory
      proc(14, v1('/kuasar-kdev-abc/k8s-pod-x/ctr')), // a container's cgroup, not a pod's own
      proc(15, v1('/kuasar-kdev-other/kuasar-gvisor-p3')), // another environment
      proc(16, v1('/sa-root')),
    ],
    { cgroupPrefix: 'kuasar-gvisor-' },
    SCOPE,
  );
  assert.deepEqual(
    [...groups].map(([name, ps]) => [name, ps.map((p) => p.pid)]),
    [
      ['kuasar-gvisor-p1', [10, 11]],
      ['kuasar-gvisor-p2', [12]],
    ],
  );
});

test("the appkernel kind's registration names the cgroup its sandboxes get", () => {
  const where = podProcessesOf('appkernel');
  assert.ok(where);
  const record = { id: 'sb1', pod: { cgroupParent: '/kuasar-kdev-abc/' } } as Parameters<typeof sentryCgroupsPath>[0];
  assert.ok('cgroupPrefix' in where);
  assert.equal(sentryCgroupsPath(record), `/kuasar-kdev-abc/${where.cgroupPrefix}sb1`);
  assert.equal(podProcessesOf('runc'), undefined);
  assert.equal(podProcessesOf(undefined), undefined);
});

test("a VM pod's QEMU is found by the name it runs under, among kuasard's children only; it is no helper of kuasard's", () => {
  const qemu = (pid: number, ppid: number, sandbox: string, state = 'S'): HostProcess => ({
    ...proc(pid, ['0::/kuasar-kdev-abc.slice']),
    ppid,
    state,
    cmdline: `/usr/bin/qemu-system-x86_64 -name ${vmName(sandbox)},debug-threads=on -machine microvm,accel=tcg`,
  });
  const kuasard: HostProcess = { ...proc(100, ['0::/']), cmdline: 'node /x/kuasard.js --config /env/kuasard.toml' };
  const processes = [
    kuasard,
    qemu(201, 100, 'aa11'),
    qemu(202, 100, 'bb22'),
    qemu(203, 100, 'cc33', 'Z'), // ended, not yet reaped
    qemu(204, 999, 'dd44'), // another environment's kuasard
    { ...proc(205, ['0::/']), ppid: 100, cmdline: 'runsc wait x' }, // a helper
  ];
  const location = podProcessesOf('vmm');
  assert.ok(location && 'argumentPrefix' in location);
  const groups = podProcessGroups(processes, location, SCOPE);
  assert.deepEqual(
    [...groups].map(([name, ps]) => [name, ps.map((p) => p.pid)]),
    [
      ['kuasar-vmm-aa11', [201]],
      ['kuasar-vmm-bb22', [202]],
    ],
  );
  assert.equal(podProcessGroups(processes, location, { ...SCOPE, kuasardPid: undefined }).size, 0, 'no kuasard, no VM of its');

  const plane = findManagementPlane(processes, {
    kuasardConfig: '/env/kuasard.toml',
    containerdSocket: '/env/containerd.sock',
    cgroupName: 'kuasar-kdev-abc',
    podProcesses: location,
  });
  assert.deepEqual(
    plane.kuasardHelpers.map((p) => p.pid),
    [205],
  );
  assert.deepEqual([...plane.podProcesses.keys()], ['kuasar-vmm-aa11', 'kuasar-vmm-bb22']);
});

function point(pods: number, podProcesses?: MemoryPoint['podProcesses']): MemoryPoint {
  return {
    pods,
    pssKb: 40_000 + 50 * pods,
    rssKb: 0,
    privateKb: 20_000 + 40 * pods,
    processes: 1,
    reads: [],
    ...(podProcesses ? { podProcesses } : {}),
  };
}

test("one pod's cost: its processes averaged over the fullest point's pods, plus kuasard's slope", () => {
  const split = (pods: number) => ({ anonymousKb: 12_000 * pods, executableAnonymousKb: 6_000 * pods, fileKb: 2_000 * pods });
  const points = [1, 5, 10].map((pods) =>
    point(pods, { pssKb: 20_000 * pods, pssByMapping: split(pods), privateKb: 14_000 * pods, processes: 5 * pods, pods }),
  );
  const memory: MemoryResult = {
    points,
    fit: linearFit(points.map((p) => ({ x: p.pods, y: p.pssKb }))),
    fitPrivate: linearFit(points.map((p) => ({ x: p.pods, y: p.privateKb }))),
    helpers: [],
    failures: [],
  };
  const cost = podMemoryCost(memory);
  assert.ok(cost);
  assert.equal(cost.pods, 10);
  assert.equal(cost.processesPssKb, 20_000);
  assert.equal(cost.processesPrivateKb, 14_000);
  assert.deepEqual(cost.processesPssByMapping, split(1), 'the split per pod too');
  assert.ok(Math.abs(cost.kuasardKb - 40) < 1e-9, 'the slope of private memory, where fitted');
  assert.ok(Math.abs(cost.pssKb - 20_040) < 1e-9);
  assert.ok(Math.abs(cost.privateKb - 14_040) < 1e-9);

  // A point at which no pod's processes were found does not count; without a fit kuasard adds 0.
  const sparse: MemoryResult = {
    points: [
      point(1, { pssKb: 21_000, pssByMapping: split(1), privateKb: 15_000, processes: 5, pods: 1 }),
      point(5, { pssKb: 0, pssByMapping: split(0), privateKb: 0, processes: 0, pods: 0 }),
    ],
    helpers: [],
    failures: [],
  };
  assert.deepEqual(podMemoryCost(sparse), {
    pods: 1,
    processesPssKb: 21_000,
    processesPssByMapping: split(1),
    processesPrivateKb: 15_000,
    kuasardKb: 0,
    pssKb: 21_000,
    privateKb: 15_000,
  });
  assert.equal(podMemoryCost({ points: [point(3)], helpers: [], failures: [] }), undefined);
});

test("a process's PSS by kind of mapping: anonymous, anonymous and executable (a JIT's code), file pages", () => {
  const smaps = [
    '55d0c0000000-55d0c0100000 r-xp 00000000 fe:00 1517800                    /usr/bin/qemu-system-x86_64',
    'Size:               1024 kB',
    'Pss:                 300 kB',
    'Pss_Anon:              0 kB',
    '7f2389e00000-7f238dcdb000 rw-p 00000000 fe:00 1517842                    /var/lib/kuasar/vmm-image/vmlinux',
    'Pss:               28000 kB',
    '7f238de00000-7f23a7e00000 rw-p 00000000 00:00 0 ',
    'Pss:              170000 kB',
    '7f23b0000000-7f23effff000 rwxp 00000000 00:00 0 ',
    'Pss:              172000 kB',
    '7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0                          [stack]',
    'Pss:                  40 kB',
    'VmFlags: rd wr mr mw me gd ac',
  ].join('\n');
  assert.deepEqual(parseSmapsByMapping(smaps), { anonymousKb: 170_040, executableAnonymousKb: 172_000, fileKb: 28_300 });
  assert.deepEqual(parseSmapsByMapping(''), { anonymousKb: 0, executableAnonymousKb: 0, fileKb: 0 });
});
