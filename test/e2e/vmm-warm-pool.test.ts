// The vmm kind's warm pool, under TCG, through CRI. kuasard keeps 3 VMs booted ahead of their pods;
// three pods started one after another each take one (their VMs' boot ids differ: fresh VMs), run
// their containers on the pod's own network (the pod IP answers from the host) with the pod's
// hostname, and the pool refills. A pod bigger than the pool's VM boots cold and works. An idle VM
// that dies is replaced. A kuasard killed with SIGKILL leaves its pool to the next run, which ends
// it and boots its own. Nothing is left at the end: no QEMU, tap, netns, mount, cgroup or file.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { LinuxContainerResourcesSchema, type ContainerConfig } from '../../src/api/cri/runtime/v1/api_pb.js';
import { askKuasard } from '../../src/cli/admin-client.js';
import type { PsResponse } from '../../src/daemon/admin-api.js';
import { renderKuasardConfigWith } from '../../src/devenv/config.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { environmentNames } from '../../src/devenv/layout.js';
import { diffHost, NO_LEAKS, snapshotHost, untilInitReaped, type HostDiff, type HostSnapshot } from '../../src/devenv/leaks.js';
import { runPod, runToExit, startRunning, type PodRun } from '../../src/devenv/pod-runs.js';
import { containerConfig } from '../../src/devenv/pods.js';
import { httpGetUnix, parsePrometheusText, sumOf } from '../../src/devenv/prometheus-text.js';
import { eventually } from '../../src/devenv/retry.js';
import { listProcesses } from '../../src/devenv/processes.js';
import { vmProcesses } from '../../src/devenv/vm-processes.js';

const POOL = 3;
const MiB = 1024n * 1024n;
/** Booting 3 VMs one after another, at the least CPU weight, under TCG on two shared cores. */
const POOL_FILLED_MS = 600_000;
const WAIT_MS = 180_000;

describe('vmm kind: the warm pool', () => {
  let env: Environment;
  let hostBefore: HostSnapshot;
  let metricsSocket: string;

  before(async () => {
    hostBefore = snapshotHost();
    env = await startEnvironment({
      kuasardConfig: (paths) =>
        renderKuasardConfigWith(
          {
            vmm: {
              warm_pool: POOL,
              // Below the environment's cgroup, where the leak check looks and teardown cleans.
              warm_pool_cgroup_parent: `/${environmentNames(paths.dir).cgroupName}/kuasar-vmm-warm`,
              warm_pool_check_interval_ms: 2_000,
              boot_timeout_ms: 180_000,
              stop_timeout_ms: 2_000,
            },
          },
          true,
          () => ({ metrics_address: `unix://${join(paths.dir, 'metrics.sock')}` }),
        )(paths),
    });
    metricsSocket = join(env.paths.dir, 'metrics.sock');
  });

  after(async () => {
    await env?.stop();
    if (!env) return;
    await untilInitReaped(env.scope);
    assert.deepEqual(
      vmProcesses(env.scope).map((p) => p.cmdline),
      [],
      'no QEMU is left, of the pool or of a pod',
    );
    assert.deepEqual(diffHost(hostBefore, snapshotHost(), { scope: env.scope }), NO_LEAKS);
  });

  const handler = () => env.handlers.kuasar['vmm'] ?? '';

  async function pool(): Promise<{ ready: number; booting: number; claims: number; cold: number; replaced: number }> {
    const { body } = await httpGetUnix(metricsSocket, '/metrics');
    const samples = parsePrometheusText(body);
    const gauge = (state: string) => sumOf(samples, 'kuasar_warm_pool_sandboxes', { kind: 'vmm', state });
    const events = (event: string) => sumOf(samples, 'kuasar_warm_pool_events_total', { kind: 'vmm', event });
    return {
      ready: gauge('ready'),
      booting: gauge('booting'),
      claims: events('claim'),
      cold: events('cold'),
      replaced: events('replaced'),
    };
  }

  const untilPoolReady = (ready: number) =>
    eventually(
      async () => {
        const now = await pool();
        assert.ok(now.ready >= ready, `the pool has ${now.ready} ready VMs (${now.booting} booting), not yet ${ready}`);
      },
      POOL_FILLED_MS,
      1_000,
    );

  /** kuasard's log records about one sandbox. */
  const sandboxLog = (podId: string): Record<string, unknown>[] =>
    readFileSync(env.paths.kuasardLog, 'utf8')
      .split('\n')
      .filter((line) => line.includes(`"sandbox":"${podId}"`))
      .map((line) => JSON.parse(line) as Record<string, unknown>);

  const warmVmOf = (podId: string): string | undefined =>
    sandboxLog(podId).find((r) => r['msg'] === 'VM ready')?.['warmVm'] as string | undefined;

  const shell = (name: string, script: string): ContainerConfig =>
    containerConfig({ name, image: env.images.busybox, command: ['sh', '-c', script] });

  const watched = () => [env.paths.kuasarState];

  /**
   * Until kuasard has reaped its zombie children: a warm VM booting meanwhile leaves one (QEMU's
   * daemonize middle process), which kuasard's orphan sweep reaps soon after.
   */
  const settle = () =>
    eventually(async () => {
      const zombies = listProcesses().filter((p) => env.scope.daemonPids.includes(p.ppid) && p.state === 'Z');
      assert.deepEqual(
        zombies.map((p) => p.cmdline),
        [],
      );
    }, 10_000);

  /**
   * A pod's leaks, less the pieces of the pool's idle VMs: the pool boots VMs while pods run. A
   * piece names its warm VM's id (its directory, cgroup, QEMU's arguments); the VM is idle while
   * its directory exists (a claimed one's pieces moved to its pod's). A boot's passing zombie too.
   */
  const podLeaks = (leaks: HostDiff): HostDiff => {
    const idle = (piece: string) => {
      // QEMU's daemonize middle process of a pool boot under way, a zombie child of QEMU's
      // launcher and then of kuasard, whose orphan sweep reaps it within about 2 s (the
      // environment's final check would find one nobody reaped).
      if (/, zombie\): \[qemu-system-[^\]]*\]$/.test(piece)) return true;
      const id = /(?:\.warm|kuasar-vmm-warm)\/([0-9a-f]{16})\b/.exec(piece)?.[1];
      return id !== undefined && existsSync(join(env.paths.kuasarState, 'vmm', '.warm', id));
    };
    return Object.fromEntries(
      Object.entries(leaks).map(([key, pieces]: [string, string[]]) => [key, pieces.filter((p) => !idle(p))]),
    ) as unknown as HostDiff;
  };

  it('starts three pods one after another from the pool: fresh VMs, the pod network and hostname, the pool refilled', async () => {
    await untilPoolReady(POOL);
    const boots: string[] = [];
    for (const name of ['warm-a', 'warm-b', 'warm-c']) {
      const { leaks } = await runPod(
        env,
        handler(),
        env.podConfig({ name }),
        watched(),
        async (run: PodRun) => {
          assert.ok(warmVmOf(run.podId), `pod ${name} was given a warm VM`);
          const page = `served by ${name}`;
          await startRunning(env, run, shell('server', `mkdir /www; echo '${page}' > /www/index.html; exec httpd -f -p 8080 -h /www`));
          const probe = await runToExit(env, run, shell('probe', 'hostname; cat /proc/sys/kernel/random/boot_id'), WAIT_MS);
          assert.equal(probe.status.exitCode, 0, probe.stderr);
          const [hostname, bootId] = probe.stdout.trim().split('\n');
          assert.equal(hostname, name, "the guest has the pod's hostname, set at claim");
          boots.push(bootId ?? '');
          const ip = (await env.cri.runtime.podSandboxStatus({ podSandboxId: run.podId })).status?.network?.ip ?? '';
          const response = await eventually(() => fetch(`http://${ip}:8080/`), 30_000);
          assert.equal(await response.text(), `${page}\n`, "the host reaches the warm VM at the pod's IP");
        },
        { settle },
      );
      assert.deepEqual(podLeaks(leaks), NO_LEAKS, `pod ${name} left nothing behind`);
    }
    assert.equal(new Set(boots).size, 3, `each pod had a VM of its own: boot ids ${boots.join(', ')}`);
    const unclean = readFileSync(env.paths.kuasardLog, 'utf8')
      .split('\n')
      .filter((line) => /QMP quit failed|did not quit in time/.test(line));
    assert.deepEqual(unclean, [], "each warm pod's VM quit when asked, through its QMP socket moved with it");
    const after = await pool();
    assert.equal(after.claims, 3);
    assert.equal(after.cold, 0);
    await untilPoolReady(POOL);
    // kuasar ps tells the same (its admin socket).
    const ps = await askKuasard<PsResponse>(join(env.paths.kuasarState, 'admin.sock'), 'GET', '/v1/sandboxes');
    assert.deepEqual(
      ps.warmPools.map(({ kind, ready, claims, coldStarts }) => ({ kind, ready, claims, coldStarts })),
      [{ kind: 'vmm', ready: POOL, claims: 3, coldStarts: 0 }],
    );
  });

  it("boots a pod bigger than the pool's VMs cold, with the reason in kuasard's log, and runs it", async () => {
    const claimsBefore = (await pool()).claims;
    const pod = env.podConfig({ name: 'too-big-for-the-pool' });
    pod.linux!.resources = create(LinuxContainerResourcesSchema, { memoryLimitInBytes: 512n * MiB });
    const { leaks } = await runPod(
      env,
      handler(),
      pod,
      watched(),
      async (run) => {
        assert.equal(warmVmOf(run.podId), undefined, 'no warm VM');
        const cold = sandboxLog(run.podId).find((r) => r['msg'] === 'the VM boots cold');
        assert.match(String(cold?.['why']), /the pod needs 1 vCPUs and 672 MiB, a warm VM has 1 and 416 MiB/);
        const hello = await runToExit(env, run, shell('hello', 'echo hello'), WAIT_MS);
        assert.equal(hello.stdout, 'hello\n');
      },
      { settle },
    );
    assert.deepEqual(podLeaks(leaks), NO_LEAKS);
    assert.equal((await pool()).claims, claimsBefore, 'the pool gave nothing');
  });

  it('replaces an idle VM whose QEMU dies', async () => {
    await untilPoolReady(POOL);
    const idle = vmProcesses(env.scope).filter((p) => p.cmdline.includes('kuasar-vmm-warm-'));
    assert.equal(idle.length, POOL, 'the pool VMs run');
    const before = await pool();
    process.kill(idle[0]!.pid, 'SIGKILL');
    await eventually(
      async () => assert.equal((await pool()).replaced, before.replaced + 1, 'the dead VM was noticed and replaced'),
      30_000,
    );
    await untilPoolReady(POOL);
    const now = vmProcesses(env.scope).filter((p) => p.cmdline.includes('kuasar-vmm-warm-'));
    assert.ok(!now.some((p) => p.pid === idle[0]!.pid));
  });

  it('ends the pool a killed kuasard left, and boots its own', async () => {
    const left = vmProcesses(env.scope)
      .filter((p) => p.cmdline.includes('kuasar-vmm-warm-'))
      .map((p) => p.pid);
    assert.ok(left.length > 0);
    await env.restartKuasard({ crash: true });
    await eventually(async () => {
      const running = new Set(vmProcesses(env.scope).map((p) => p.pid));
      assert.deepEqual(
        left.filter((pid) => running.has(pid)),
        [],
        "the previous run's warm VMs were ended",
      );
    }, 60_000);
    await untilPoolReady(1);
    const { leaks } = await runPod(
      env,
      handler(),
      env.podConfig({ name: 'after-restart' }),
      watched(),
      async (run) => {
        assert.ok(warmVmOf(run.podId), 'the new pool serves pods');
        const hello = await runToExit(env, run, shell('hello', 'echo hello'), WAIT_MS);
        assert.equal(hello.stdout, 'hello\n');
      },
      { settle },
    );
    assert.deepEqual(podLeaks(leaks), NO_LEAKS);
  });
});
