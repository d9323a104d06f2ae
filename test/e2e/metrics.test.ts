// kuasard's Prometheus endpoint, scraped for real: a kuasard serving the runc kind with
// `metrics_address` on a unix socket in the environment's directory. A pod with a container is
// started and removed through CRI; the scrapes between show the sandbox and container gauges, the
// controller's and the Task API's RPC counters, the stage histograms and the pod's cgroup figures
// move with it, and go back once it is gone.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { renderKuasardConfigWith } from '../../src/devenv/config.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { diffHost, NO_LEAKS, snapshotHost, untilInitReaped, type HostSnapshot } from '../../src/devenv/leaks.js';
import { runPod, startRunning } from '../../src/devenv/pod-runs.js';
import { containerConfig } from '../../src/devenv/pods.js';
import { httpGetUnix, parsePrometheusText, type Sample, samplesOf, sumOf } from '../../src/devenv/prometheus-text.js';
import { KIND_NAMES } from '../../src/kinds/index.js';

/** The runc kind alone: the others are not what this test is about. */
const ONLY_RUNC = Object.fromEntries(KIND_NAMES.filter((k) => k !== 'runc').map((k) => [k, { enabled: false }]));

describe('kuasard metrics', () => {
  let env: Environment;
  let hostBefore: HostSnapshot;
  let socket: string;

  before(async () => {
    hostBefore = snapshotHost();
    env = await startEnvironment({
      kuasardConfig: renderKuasardConfigWith(ONLY_RUNC, true, (paths) => ({
        metrics_address: `unix://${join(paths.dir, 'metrics.sock')}`,
      })),
    });
    socket = join(env.paths.dir, 'metrics.sock');
  });

  after(async () => {
    await env?.stop();
    if (env) assert.deepEqual(diffHost(hostBefore, snapshotHost(), { scope: env.scope }), NO_LEAKS);
    if (socket) assert.equal(existsSync(socket), false, 'the metrics socket went with kuasard');
  });

  async function scrape(): Promise<Sample[]> {
    const { status, body, contentType } = await httpGetUnix(socket, '/metrics');
    assert.equal(status, 200, body);
    assert.match(contentType, /^text\/plain; version=0\.0\.4/);
    return parsePrometheusText(body);
  }

  const runc = { kind: 'runc' };
  const rpcs = (samples: Sample[], service: string, method: string) =>
    sumOf(samples, 'kuasar_rpc_requests_total', { ...runc, service, method, code: 'OK' });
  const stageCount = (samples: Sample[], stage: string) => sumOf(samples, 'kuasar_stage_duration_seconds_count', { stage });

  it('serves GET /metrics only', async () => {
    assert.equal((await httpGetUnix(socket, '/')).status, 404);
    assert.equal((await httpGetUnix(socket, '/metrics.json')).status, 404);
  });

  it('shows the fd keeper up, nothing recovered, the process memory', async () => {
    const samples = await scrape();
    assert.equal(sumOf(samples, 'kuasar_fd_keeper_up'), 1);
    assert.equal(sumOf(samples, 'kuasar_recovered_sandboxes', runc), 0);
    assert.equal(samplesOf(samples, 'kuasar_recovered_sandboxes', runc).length, 1, 'the runc kind reports its recovery');
    assert.ok(sumOf(samples, 'process_resident_memory_bytes') > 0);
  });

  it('moves counts and histograms as a pod starts and stops', async () => {
    const before = await scrape();
    assert.equal(sumOf(before, 'kuasar_sandboxes', runc), 0, 'no sandbox yet');
    assert.equal(samplesOf(before, 'kuasar_sandboxes', { ...runc, state: 'ready' }).length, 1, 'a ready gauge at 0 is shown');
    let podId = '';
    const { leaks } = await runPod(
      env,
      env.handlers.kuasar['runc']!,
      env.podConfig({ name: 'metrics' }),
      [env.paths.kuasarState],
      async (run) => {
        podId = run.podId;
        await startRunning(env, run, containerConfig({ name: 'sleeper', image: env.images.busybox, command: ['sleep', '3600'] }));
        const during = await scrape();
        assert.equal(sumOf(during, 'kuasar_sandboxes', { ...runc, state: 'ready' }), 1);
        assert.equal(sumOf(during, 'kuasar_containers', { ...runc, state: 'running' }), 1);
        assert.equal(rpcs(during, 'controller', 'create') - rpcs(before, 'controller', 'create'), 1, 'one controller Create');
        assert.equal(rpcs(during, 'controller', 'start') - rpcs(before, 'controller', 'start'), 1, 'one controller Start');
        assert.equal(rpcs(during, 'task', 'start') - rpcs(before, 'task', 'start'), 1, 'one Task Start');
        assert.ok(sumOf(during, 'kuasar_rpc_duration_seconds_count', { ...runc, service: 'controller', method: 'start' }) >= 1);
        assert.equal(stageCount(during, 'runc.pin-namespaces') - stageCount(before, 'runc.pin-namespaces'), 1);
        assert.ok(stageCount(during, 'oci.create') > stageCount(before, 'oci.create'), 'runc create was timed');
        const pod = { sandbox: run.podId, pod: 'metrics', ...runc };
        assert.ok(sumOf(during, 'kuasar_pod_memory_bytes', pod) > 0, "the pod's cgroup memory");
        assert.equal(samplesOf(during, 'kuasar_pod_cpu_seconds_total', pod).length, 1, "the pod's cgroup CPU time");
      },
    );
    assert.deepEqual(leaks, NO_LEAKS, 'the pod left nothing behind');

    const afterwards = await scrape();
    assert.equal(sumOf(afterwards, 'kuasar_sandboxes', runc), 0, 'the sandbox is gone');
    assert.equal(sumOf(afterwards, 'kuasar_containers', runc), 0, 'its container too');
    assert.equal(samplesOf(afterwards, 'kuasar_pod_memory_bytes', { sandbox: podId }).length, 0, 'no figures of a removed pod');
    assert.equal(rpcs(afterwards, 'controller', 'shutdown') - rpcs(before, 'controller', 'shutdown'), 1, 'one controller Shutdown');
    assert.equal(stageCount(afterwards, 'controller.shutdown') - stageCount(before, 'controller.shutdown'), 1, 'its stage timed');
    assert.ok(stageCount(afterwards, 'oci.delete') > stageCount(before, 'oci.delete'), 'runc delete was timed');
  });

  it('counts what a restarted kuasard took over', async () => {
    const { leaks } = await runPod(
      env,
      env.handlers.kuasar['runc']!,
      env.podConfig({ name: 'kept' }),
      [env.paths.kuasarState],
      async (run) => {
        await startRunning(env, run, containerConfig({ name: 'sleeper', image: env.images.busybox, command: ['sleep', '3600'] }));
        await env.restartKuasard();
        const samples = await scrape();
        assert.equal(sumOf(samples, 'kuasar_recovered_sandboxes', runc), 1);
        assert.equal(sumOf(samples, 'kuasar_recovered_containers', runc), 1);
        assert.equal(sumOf(samples, 'kuasar_sandboxes', { ...runc, state: 'ready' }), 1);
        assert.equal(sumOf(samples, 'kuasar_containers', { ...runc, state: 'running' }), 1);
        assert.equal(sumOf(samples, 'kuasar_fd_keeper_up'), 1, 'the new run found the keeper');
      },
      // The container is no longer kuasard's child after the restart: init reaps it.
      { settle: () => untilInitReaped(env.scope) },
    );
    assert.deepEqual(leaks, NO_LEAKS, 'the pod left nothing behind');
  });
});
