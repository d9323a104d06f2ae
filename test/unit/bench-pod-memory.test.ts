// The memory of a kind whose pods keep processes of their own (a gVisor sandbox, its gofers and
// stubs): finding those processes by their cgroup, and what one pod costs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { podProcessesOf } from '../../src/bench/kinds.js';
import { podProcessGroups } from '../../src/bench/memory.js';
import { podMemoryCost } from '../../src/bench/pod-memory.js';
import type { MemoryPoint, MemoryResult } from '../../src/bench/results.js';
import { linearFit } from '../../src/bench/stats.js';
import type { HostProcess } from '../../src/devenv/processes.js';
import { sentryCgroupsPath } from '../../src/kinds/appkernel/sandbox.js';

function proc(pid: number, cgroups: string[], state = 'S'): HostProcess {
  return { pid, ppid: 1, state, startTime: '1', cmdline: 'runsc-sandbox', cgroups, namespaces: {} };
}

const WHERE = { cgroupName: 'kuasar-kdev-abc', cgroupPrefix: 'kuasar-gvisor-' };

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
    WHERE,
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
  assert.equal(sentryCgroupsPath(record), `/kuasar-kdev-abc/${where.cgroupPrefix}sb1`);
  assert.equal(podProcessesOf('runc'), undefined);
  assert.equal(podProcessesOf(undefined), undefined);
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
  const points = [1, 5, 10].map((pods) => point(pods, { pssKb: 20_000 * pods, privateKb: 14_000 * pods, processes: 5 * pods, pods }));
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
  assert.ok(Math.abs(cost.kuasardKb - 40) < 1e-9, 'the slope of private memory, where fitted');
  assert.ok(Math.abs(cost.pssKb - 20_040) < 1e-9);
  assert.ok(Math.abs(cost.privateKb - 14_040) < 1e-9);

  // A point at which no pod's processes were found does not count; without a fit kuasard adds 0.
  const sparse: MemoryResult = {
    points: [
      point(1, { pssKb: 21_000, privateKb: 15_000, processes: 5, pods: 1 }),
      point(5, { pssKb: 0, privateKb: 0, processes: 0, pods: 0 }),
    ],
    helpers: [],
    failures: [],
  };
  assert.deepEqual(podMemoryCost(sparse), {
    pods: 1,
    processesPssKb: 21_000,
    processesPrivateKb: 15_000,
    kuasardKb: 0,
    pssKb: 21_000,
    privateKb: 15_000,
  });
  assert.equal(podMemoryCost({ points: [point(3)], helpers: [], failures: [] }), undefined);
});
