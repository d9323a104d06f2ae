// A runtime's `events --stats` figures as a task's cgroup metrics, from outputs captured on this
// project's host (test/fixtures/runtime-stats), checked the way containerd's CRI reads them: the
// Any decoded, then its working set, available bytes and CPU rate computed by CRI's rules.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromBinary } from '@bufbuild/protobuf';
import { type Metrics as V1Metrics, MetricsSchema as V1MetricsSchema } from '../../src/api/containerd/cgroups/v1/metrics_pb.js';
import { type Metrics as V2Metrics, MetricsSchema as V2MetricsSchema } from '../../src/api/containerd/cgroups/v2/metrics_pb.js';
import type { CgroupMetrics } from '../../src/base/metrics.js';
import { V2_UNLIMITED } from '../../src/linux/cgroup-stats.js';
import { parseStatsEvent } from '../../src/oci/stats.js';
import { ContainerStatsMetrics, statsToCgroupMetrics } from '../../src/oci/stats-metrics.js';
import { packCgroupMetrics } from '../../src/services/metrics.js';
import { RUNC_V1, RUNSC_BUSY, RUNSC_IDLE, RUNSC_IDLE_CPU_TOTALS, RUNSC_ROOT, RUNSC_ROOT_ALONE } from '../fixtures/runtime-stats/samples.js';

const U64 = 2n ** 64n;
/** CRI: a limit above this is no limit, and available bytes are then 0. */
const CRI_UNLIMITED_ABOVE = 2n ** 62n;

/** containerd's CRI on io.containerd.cgroups.v1.Metrics (uint64 arithmetic, wrapping included). */
function criV1(any: ReturnType<typeof packCgroupMetrics>) {
  const m: V1Metrics = fromBinary(V1MetricsSchema, any.value);
  const usage = m.memory!.usage!.usage;
  const workingSet = m.memory!.totalInactiveFile < usage ? usage - m.memory!.totalInactiveFile : 0n;
  const limit = m.memory!.usage!.limit;
  const available = limit > CRI_UNLIMITED_ABOVE ? 0n : (limit - workingSet + U64) % U64;
  return { cpuNanoseconds: m.cpu!.usage!.total, usage, workingSet, available, rss: m.memory!.totalRss };
}

/** containerd's CRI on io.containerd.cgroups.v2.Metrics. */
function criV2(any: ReturnType<typeof packCgroupMetrics>) {
  const m: V2Metrics = fromBinary(V2MetricsSchema, any.value);
  const workingSet = m.memory!.inactiveFile < m.memory!.usage ? m.memory!.usage - m.memory!.inactiveFile : 0n;
  const available = m.memory!.usageLimit > CRI_UNLIMITED_ABOVE ? 0n : (m.memory!.usageLimit - workingSet + U64) % U64;
  return { cpuNanoseconds: m.cpu!.usageUsec * 1000n, workingSet, available };
}

const runsc = (output: string): ReturnType<typeof parseStatsEvent> => parseStatsEvent(output, JSON.parse(output).id);

describe('runtime stats as cgroup metrics', () => {
  it('gives CRI runsc’s CPU time and memory usage as the working set, with no limit instead of 0 (v1)', () => {
    const metrics = statsToCgroupMetrics(runsc(RUNSC_ROOT_ALONE), 1);
    assert.equal(metrics.version, 1);
    assert.deepEqual(criV1(packCgroupMetrics(metrics)), {
      cpuNanoseconds: 285853520n,
      usage: 2031616n,
      workingSet: 2031616n,
      // runsc's limit 0 kept as is would give 0 - 2031616 wrapped around 2^64.
      available: 0n,
      rss: 0n,
    });
    // The zero swap, kernel and kernelTCP entries runsc prints are not passed on as figures.
    const v1 = (metrics as Extract<CgroupMetrics, { version: 1 }>).v1;
    assert.deepEqual(Object.keys(v1.memory!).sort(), ['cache', 'usage']);
    assert.deepEqual(v1.pids, { current: 1n, limit: 0n });
  });

  it('passes on runsc’s per-container figures of a pod: memory split among the subcontainers, CPU time by container', () => {
    const [root, idle, busy] = [RUNSC_ROOT, RUNSC_IDLE, RUNSC_BUSY].map((output) =>
      criV1(packCgroupMetrics(statsToCgroupMetrics(runsc(output), 1))),
    );
    assert.equal(root!.workingSet, 0n);
    assert.equal(idle!.workingSet, 29253632n);
    assert.equal(busy!.workingSet, 29253632n);
    assert.equal(busy!.cpuNanoseconds, 8168523079n);
    assert.ok(idle!.cpuNanoseconds < 100_000_000n);
  });

  it('subtracts runc’s inactive file pages from the working set, and keeps its real limit', () => {
    const cri = criV1(packCgroupMetrics(statsToCgroupMetrics(parseStatsEvent(RUNC_V1, 'sa-runc'), 1)));
    assert.equal(cri.usage, 8753152n);
    assert.equal(cri.workingSet, 8753152n - 1310720n);
    assert.equal(cri.rss, 57344n);
    assert.equal(cri.available, 0n); // 9223372036854771712: cgroup v1's "no limit"
  });

  it('gives the v2 shape in microseconds, with the v2 "max" for a limit of 0', () => {
    const metrics = statsToCgroupMetrics(runsc(RUNSC_BUSY), 2);
    assert.equal(metrics.version, 2);
    const v2 = (metrics as Extract<CgroupMetrics, { version: 2 }>).v2;
    assert.equal(v2.memory?.usageLimit, V2_UNLIMITED);
    assert.deepEqual(criV2(packCgroupMetrics(metrics)), { cpuNanoseconds: 8168523000n, workingSet: 29253632n, available: 0n });
    const runc = criV2(packCgroupMetrics(statsToCgroupMetrics(parseStatsEvent(RUNC_V1, 'sa-runc'), 2)));
    assert.equal(runc.workingSet, 8753152n - 1310720n); // raw inactive_file, read by the v2 table
  });

  it('never reports a CPU total below one reported before: CRI would read the fall as a huge rate', () => {
    const idle = parseStatsEvent(RUNSC_IDLE, 'sa-c1');
    const container = new ContainerStatsMetrics(1);
    const totals = [...RUNSC_IDLE_CPU_TOTALS, 50_000_000n].map((total) => {
      const sample = { ...idle, cpu: { ...idle.cpu, usage: { ...idle.cpu.usage, total } } };
      return criV1(packCgroupMetrics(container.next(sample))).cpuNanoseconds;
    });
    assert.deepEqual(totals, [46322619n, 46322619n, 46322619n, 50_000_000n]);
  });
});
