// Cgroup counters: the kernel's file formats, a whole cgroup read from a fake cgroup tree (v1
// with one controller per hierarchy, as on this project's host, and v2), and the Any that
// containerd's CRI decodes.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fromBinary } from '@bufbuild/protobuf';
import { MetricsSchema as V1MetricsSchema } from '../../src/api/containerd/cgroups/v1/metrics_pb.js';
import { MetricsSchema as V2MetricsSchema } from '../../src/api/containerd/cgroups/v2/metrics_pb.js';
import { Code, RuntimeError } from '../../src/base/errors.js';
import {
  parseBlkio,
  parseCounter,
  parseIoStat,
  parseKeyedCounters,
  parsePressure,
  readCgroupMetrics,
  readCgroupV2Metrics,
  readEffectiveMemoryLimit,
  readOomKills,
  V2_UNLIMITED,
} from '../../src/linux/cgroup-stats.js';
import type { CgroupLayout } from '../../src/linux/cgroups.js';
import { packCgroupMetrics } from '../../src/services/metrics.js';

describe('cgroup file formats', () => {
  it('reads "key value" files and skips lines that are not counters', () => {
    const counters = parseKeyedCounters('cache 4096\nrss 8192\n\nweird line here\nneg -1\n');
    assert.deepEqual(
      [...counters],
      [
        ['cache', 4096n],
        ['rss', 8192n],
      ],
    );
  });

  it('reads single counters, with "max" and -1 as no limit', () => {
    assert.equal(parseCounter('123\n'), 123n);
    assert.equal(parseCounter('max\n', V2_UNLIMITED), 2n ** 64n - 1n);
    assert.equal(parseCounter('max'), 0n);
    assert.equal(parseCounter('-1'), 0n);
    assert.equal(parseCounter('9223372036854771712'), 9223372036854771712n, 'no precision is lost');
    assert.throws(() => parseCounter('lots'), /not a cgroup counter/);
  });

  it('reads blkio and io.stat device lines', () => {
    assert.deepEqual(parseBlkio('8:0 Read 4096\n8:0 Write 0\nTotal 4096\n'), [
      { op: 'Read', device: '', major: 8n, minor: 0n, value: 4096n },
      { op: 'Write', device: '', major: 8n, minor: 0n, value: 0n },
    ]);
    assert.deepEqual(parseIoStat('259:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n'), [
      { major: 259n, minor: 0n, rbytes: 10n, wbytes: 20n, rios: 1n, wios: 2n },
    ]);
  });

  it('reads pressure files', () => {
    const psi = parsePressure('some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n');
    assert.deepEqual(psi, {
      some: { avg10: 1.5, avg60: 0.25, avg300: 0, total: 12345n },
      full: { avg10: 0, avg60: 0, avg300: 0, total: 7n },
    });
  });
});

async function writeFiles(dir: string, files: Record<string, string>): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
}

describe('reading a cgroup', () => {
  let root: string;
  let v1: CgroupLayout;
  let v2: CgroupLayout;
  const hierarchy = (controller: string) => ({
    version: 1 as const,
    mountPoint: join(root, controller),
    root: '/',
    controllers: [controller],
  });

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'kuasar-cgroup-'));
    v1 = { mode: 'hybrid', hierarchies: ['cpu', 'cpuacct', 'memory', 'pids', 'blkio'].map(hierarchy) };
    v2 = { mode: 'unified', hierarchies: [{ version: 2, mountPoint: join(root, 'unified'), root: '/', controllers: [] }] };
    await writeFiles(join(root, 'memory/pod/c1'), {
      'memory.stat': 'cache 100\nrss 2000\npgpgin 5\ntotal_inactive_file 300\ntotal_rss 2000\nhierarchical_memsw_limit 77\nunknown_key 9\n',
      'memory.usage_in_bytes': '4096\n',
      'memory.limit_in_bytes': '67108864\n',
      'memory.max_usage_in_bytes': '8192\n',
      'memory.failcnt': '3\n',
      'memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
    });
    await writeFiles(join(root, 'cpuacct/pod/c1'), {
      'cpuacct.usage': '1500000000\n',
      'cpuacct.usage_percpu': '1000000000 500000000 \n',
      'cpuacct.stat': 'user 120\nsystem 30\n',
    });
    await writeFiles(join(root, 'cpu/pod/c1'), { 'cpu.stat': 'nr_periods 10\nnr_throttled 4\nthrottled_time 900\n' });
    await writeFiles(join(root, 'pids/pod/c1'), { 'pids.current': '3\n', 'pids.max': 'max\n' });
    await writeFiles(join(root, 'blkio/pod/c1'), { 'blkio.throttle.io_service_bytes_recursive': '8:0 Read 512\nTotal 512\n' });
    await writeFiles(join(root, 'unified/pod/c2'), {
      'cpu.stat': 'usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n',
      'memory.stat': 'anon 1000\nfile 200\ninactive_file 50\nworkingset_refault_anon 1\nworkingset_refault_file 2\npgfault 9\n',
      'memory.current': '4096\n',
      'memory.max': 'max\n',
      'memory.events': 'low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n',
      'pids.current': '2\n',
      'pids.max': '100\n',
      'io.stat': '8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n',
      'cpu.pressure': 'some avg10=0.00 avg60=0.00 avg300=0.00 total=42\n',
    });
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("reads v1 counters from each controller's hierarchy", async () => {
    const metrics = await readCgroupMetrics('/pod/c1', v1);
    assert.equal(metrics.version, 1);
    const m = metrics.version === 1 ? metrics.v1 : assert.fail('v1 expected');
    assert.deepEqual(m.cpu, {
      // Without cpuacct.usage_user/usage_sys, the USER_HZ tick counts are used.
      usage: { total: 1_500_000_000n, user: 1_200_000_000n, kernel: 300_000_000n, perCpu: [1_000_000_000n, 500_000_000n] },
      throttling: { periods: 10n, throttledPeriods: 4n, throttledTime: 900n },
    });
    assert.equal(m.memory?.cache, 100n);
    assert.equal(m.memory?.pgPgIn, 5n);
    assert.equal(m.memory?.totalInactiveFile, 300n);
    assert.equal(m.memory?.hierarchicalSwapLimit, 77n);
    assert.deepEqual(m.memory?.usage, { usage: 4096n, limit: 67108864n, max: 8192n, failcnt: 3n });
    assert.equal(m.memory?.swap, undefined, 'no memsw files: no swap entry');
    assert.deepEqual(m.memoryOomControl, { oomKillDisable: 0n, underOom: 0n, oomKill: 2n });
    assert.deepEqual(m.pids, { current: 3n, limit: 0n });
    assert.deepEqual(m.blkio?.ioServiceBytesRecursive, [{ op: 'Read', device: '', major: 8n, minor: 0n, value: 512n }]);
  });

  it('reads v2 counters from the one unified directory', async () => {
    const metrics = await readCgroupMetrics('/pod/c2', v2);
    const m = metrics.version === 2 ? metrics.v2 : assert.fail('v2 expected');
    assert.equal(m.cpu?.usageUsec, 2500n);
    assert.deepEqual(m.cpu?.psi?.some, { avg10: 0, avg60: 0, avg300: 0, total: 42n });
    assert.equal(m.memory?.anon, 1000n);
    assert.equal(m.memory?.inactiveFile, 50n);
    assert.equal(m.memory?.workingsetRefault, 3n, 'the split _anon/_file counters are summed');
    assert.equal(m.memory?.usage, 4096n);
    assert.equal(m.memory?.usageLimit, V2_UNLIMITED);
    assert.equal(m.memory?.swapUsage, undefined);
    assert.deepEqual(m.memoryEvents, { low: 0n, high: 0n, max: 5n, oom: 1n, oomKill: 1n });
    assert.deepEqual(m.pids, { current: 2n, limit: 100n });
    assert.equal(m.io?.usage[0]?.wios, 4n);
  });

  it('counts OOM kills in v1 and v2, and knows nothing of a cgroup that is gone', async () => {
    assert.equal(await readOomKills('/pod/c1', v1), 2n);
    assert.equal(await readOomKills('/pod/c2', v2), 1n);
    assert.equal(await readOomKills('/pod/gone', v1), undefined);
  });

  it("reads a cgroup's v2 counters whatever the layout: on a hybrid host, from its cgroup2 tree", async () => {
    const hybrid: CgroupLayout = { mode: 'hybrid', hierarchies: [...v1.hierarchies, ...v2.hierarchies] };
    const m = await readCgroupV2Metrics('/pod/c2', hybrid);
    assert.equal(m.cpu?.usageUsec, 2500n);
    assert.equal(m.memoryEvents?.oomKill, 1n);
    await assert.rejects(readCgroupV2Metrics('/pod/c1', v1), (err: unknown) => err instanceof RuntimeError && err.code === Code.NotFound);
  });

  it('finds the memory limit that holds for a cgroup: its own or a lower one of an ancestor', async () => {
    await writeFiles(join(root, 'memory/limited'), { 'memory.stat': 'cache 0\nhierarchical_memory_limit 536870912\n' });
    await writeFiles(join(root, 'memory/free'), { 'memory.stat': 'hierarchical_memory_limit 9223372036854771712\n' });
    assert.equal(await readEffectiveMemoryLimit('/limited', v1), 536870912n);
    assert.equal(await readEffectiveMemoryLimit('/free', v1), undefined, "v1's largest value is no limit");
    assert.equal(await readEffectiveMemoryLimit('/gone', v1), undefined);
    await writeFiles(join(root, 'unified/parent'), { 'memory.max': '268435456\n' });
    await writeFiles(join(root, 'unified/parent/pod'), { 'memory.max': '1073741824\n' });
    await writeFiles(join(root, 'unified/open'), { 'memory.max': 'max\n' });
    assert.equal(await readEffectiveMemoryLimit('/parent/pod', v2), 268435456n, "the parent's lower limit holds");
    assert.equal(await readEffectiveMemoryLimit('/open', v2), undefined);
  });

  it('answers NotFound for a cgroup that does not exist', async () => {
    await assert.rejects(readCgroupMetrics('/pod/gone', v1), (err: unknown) => err instanceof RuntimeError && err.code === Code.NotFound);
    await assert.rejects(readCgroupMetrics('/pod/gone', v2), (err: unknown) => err instanceof RuntimeError && err.code === Code.NotFound);
  });

  it("packs the counters in an Any whose type_url is the bare message name, as containerd's CRI compares it", async () => {
    const any1 = packCgroupMetrics(await readCgroupMetrics('/pod/c1', v1));
    assert.equal(any1.typeUrl, 'io.containerd.cgroups.v1.Metrics');
    const decoded1 = fromBinary(V1MetricsSchema, any1.value);
    assert.equal(decoded1.cpu?.usage?.total, 1_500_000_000n);
    assert.equal(decoded1.memory?.usage?.usage, 4096n);
    assert.equal(decoded1.memory?.totalInactiveFile, 300n);

    const any2 = packCgroupMetrics(await readCgroupMetrics('/pod/c2', v2));
    assert.equal(any2.typeUrl, 'io.containerd.cgroups.v2.Metrics');
    const decoded2 = fromBinary(V2MetricsSchema, any2.value);
    assert.equal(decoded2.memory?.usageLimit, V2_UNLIMITED);
    assert.equal(decoded2.memoryEvents?.oomKill, 1n);
  });
});
