// kuasard's metrics, the pure pieces and the endpoint: the address rules, a pod's usage from its
// cgroup figures, the scrape's time-out, the text format read back, GET /metrics only.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { Code, RuntimeError } from '../../src/base/errors.js';
import { timed } from '../../src/base/stages.js';
import { parseConfig } from '../../src/config/config.js';
import { parseMetricsAddress } from '../../src/config/metrics-address.js';
import { DaemonMetrics } from '../../src/daemon/metrics.js';
import { serveMetrics } from '../../src/daemon/metrics-server.js';
import { podUsage, readPodUsages } from '../../src/daemon/pod-usage.js';
import { httpGetUnix, parsePrometheusText, samplesOf, sumOf } from '../../src/devenv/prometheus-text.js';
import { withCallLog } from '../../src/services/call-log.js';

const silent = pino({ level: 'silent' });

test('metrics_address: a unix socket or a loopback TCP port', () => {
  assert.deepEqual(parseMetricsAddress('unix:///run/kuasar/metrics.sock'), { kind: 'unix', path: '/run/kuasar/metrics.sock' });
  assert.deepEqual(parseMetricsAddress('127.0.0.1:9464'), { kind: 'tcp', host: '127.0.0.1', port: 9464 });
  assert.deepEqual(parseMetricsAddress('127.3.2.1:80'), { kind: 'tcp', host: '127.3.2.1', port: 80 });
  assert.deepEqual(parseMetricsAddress('[::1]:9464'), { kind: 'tcp', host: '::1', port: 9464 });
  assert.throws(() => parseMetricsAddress('0.0.0.0:9464'), /loopback address only/);
  assert.throws(() => parseMetricsAddress('10.1.2.3:9464'), /loopback address only/);
  assert.throws(() => parseMetricsAddress('[::]:9464'), /loopback address only/);
  assert.throws(() => parseMetricsAddress('localhost:9464'), /not an IP address/);
  assert.throws(() => parseMetricsAddress('127.0.0.1:0'), /out of range/);
  assert.throws(() => parseMetricsAddress('127.0.0.1:70000'), /out of range/);
  assert.throws(() => parseMetricsAddress('::1:9464'), /not an address/);
  assert.throws(() => parseMetricsAddress('unix://relative.sock'), /absolute path/);
  assert.throws(() => parseMetricsAddress('9464'), /not an address/);
});

test('the configuration: metrics are off by default; a bad address names the key', () => {
  assert.equal(parseConfig({}).metrics_address, undefined);
  assert.deepEqual(parseConfig({ metrics_address: '[::1]:9000' }).metrics_address, { kind: 'tcp', host: '::1', port: 9000 });
  assert.throws(
    () => parseConfig({ metrics_address: '192.168.1.1:9000' }),
    (err: unknown) => err instanceof RuntimeError && err.code === Code.InvalidArgument && /metrics_address: .*loopback/.test(err.message),
  );
});

test("a pod's usage from cgroup v1 and v2 figures", () => {
  assert.deepEqual(
    podUsage({
      version: 1,
      v1: {
        cpu: { usage: { total: 2_500_000_000n, kernel: 0n, user: 0n, perCpu: [] } },
        memory: { usage: { usage: 4096n, limit: 0n, max: 0n, failcnt: 0n } },
      },
    } as never),
    { cpuSeconds: 2.5, memoryBytes: 4096 },
  );
  assert.deepEqual(podUsage({ version: 2, v2: { cpu: { usageUsec: 1_500_000n }, memory: { usage: 8192n } } } as never), {
    cpuSeconds: 1.5,
    memoryBytes: 8192,
  });
  assert.deepEqual(podUsage({ version: 2, v2: {} } as never), { cpuSeconds: undefined, memoryBytes: undefined });
});

test('a scrape skips the pods whose figures fail or come late', async () => {
  const figures = { version: 2, v2: { memory: { usage: 1n } } } as never;
  const usages = await readPodUsages(
    ['ok', 'broken', 'hung'],
    (pod) => (pod === 'ok' ? Promise.resolve(figures) : pod === 'broken' ? Promise.reject(new Error('gone')) : new Promise(() => {})),
    50,
  );
  assert.deepEqual([...usages.keys()], ['ok']);
});

test('the text format read back: RPCs by code, stages, the process metrics', async () => {
  const metrics = new DaemonMetrics();
  try {
    const handlers = withCallLog(
      { Create: async () => 'made', Start: async () => Promise.reject(new RuntimeError(Code.NotFound, 'no such sandbox')) },
      silent,
      'controller',
      metrics.rpcObserver('runc', 'controller'),
    );
    assert.equal(await handlers.Create(), 'made');
    await assert.rejects(handlers.Start(), /no such sandbox/);
    await timed(silent, 'runc.pin-namespaces', async () => undefined);
    const samples = parsePrometheusText((await metrics.scrape()).text);
    const rpc = { kind: 'runc', service: 'controller' };
    assert.equal(sumOf(samples, 'kuasar_rpc_requests_total', { ...rpc, method: 'Create', code: 'OK' }), 1);
    assert.equal(sumOf(samples, 'kuasar_rpc_requests_total', { ...rpc, method: 'Start', code: 'NotFound' }), 1);
    assert.equal(sumOf(samples, 'kuasar_rpc_duration_seconds_count', { ...rpc, method: 'Create' }), 1);
    assert.equal(sumOf(samples, 'kuasar_stage_duration_seconds_count', { stage: 'runc.pin-namespaces' }), 1);
    // The call's own stage record feeds the stage histogram too.
    assert.equal(sumOf(samples, 'kuasar_stage_duration_seconds_count', { stage: 'controller.Create' }), 1);
    assert.equal(sumOf(samples, 'kuasar_fd_keeper_up'), 0);
    assert.ok(sumOf(samples, 'process_resident_memory_bytes') > 0, 'the process metrics are there');
  } finally {
    metrics.close();
  }
  // Closed: stages are no longer observed.
  const after = new DaemonMetrics();
  after.close();
  await timed(silent, 'runc.pin-namespaces', async () => undefined);
  assert.equal(samplesOf(parsePrometheusText((await after.scrape()).text), 'kuasar_stage_duration_seconds_count').length, 0);
});

test('labels with escapes are read back', () => {
  const [sample] = parsePrometheusText('# HELP x y\nx{a="q\\"uote",b="back\\\\slash",c="new\\nline"} 2.5e3\n');
  assert.deepEqual(sample, { name: 'x', labels: { a: 'q"uote', b: 'back\\slash', c: 'new\nline' }, value: 2500 });
  assert.throws(() => parsePrometheusText('x{a=1} 2\n'), /bad labels/);
});

test('the endpoint serves GET /metrics on a unix socket, 404 for the rest', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kuasar-metrics-'));
  const path = join(dir, 'metrics.sock');
  const server = await serveMetrics(
    { kind: 'unix', path },
    async () => ({ text: 'up 1\n', contentType: 'text/plain; version=0.0.4' }),
    silent,
  );
  try {
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const ok = await httpGetUnix(path, '/metrics');
    assert.equal(ok.status, 200);
    assert.match(ok.contentType, /version=0\.0\.4/);
    assert.deepEqual(parsePrometheusText(ok.body), [{ name: 'up', labels: {}, value: 1 }]);
    assert.equal((await httpGetUnix(path, '/')).status, 404);
    assert.equal((await httpGetUnix(path, '/metrics/x')).status, 404);
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.throws(() => statSync(path), /ENOENT/);
});
