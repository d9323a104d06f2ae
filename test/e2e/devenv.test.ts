// The development environment itself: it leaves nothing on the host however it ends (stopped
// with pods still running, failed start, owner killed), its leak checks see what a running pod
// puts on the host, and kuasard can be restarted in it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { environmentNames } from '../../src/devenv/layout.js';
import { diffHost, NO_LEAKS, snapshotHost, type LeakScope } from '../../src/devenv/leaks.js';
import { containerConfig } from '../../src/devenv/pods.js';
import { sweepStaleEnvironments } from '../../src/devenv/teardown.js';

/** Starts a pod whose one container sleeps, so that it holds mounts, cgroups, processes and a veth. */
async function runSleepingPod(env: Environment, name: string): Promise<string> {
  const pod = env.podConfig({ name });
  const { podSandboxId } = await env.cri.runtime.runPodSandbox({ config: pod, runtimeHandler: env.handlers.baseline });
  const config = containerConfig({ name: 'sleeper', image: env.images.busybox, command: ['sleep', '3600'] });
  const { containerId } = await env.cri.runtime.createContainer({ podSandboxId, config, sandboxConfig: pod });
  await env.cri.runtime.startContainer({ containerId });
  return podSandboxId;
}

/** containerd's cached CNI results that name a network namespace of the environment. */
function cniCacheEntriesOf(dir: string): string[] {
  const cache = '/var/lib/cni/results';
  if (!existsSync(cache)) return [];
  return readdirSync(cache).filter((entry) => readFileSync(join(cache, entry), 'utf8').includes(`"${dir}/`));
}

/** The scope of an environment known only by its directory, as after its daemons are gone. */
function scopeOfDir(dir: string): LeakScope {
  const names = environmentNames(dir);
  return { dir, cgroupName: names.cgroupName, bridge: names.bridge, daemonPids: [] };
}

describe('development environment', () => {
  const started: Environment[] = [];
  after(async () => {
    for (const env of started) await env.stop();
  });

  it('sees a running pod in its leak checks, and stop() removes it with everything else', async () => {
    const before = snapshotHost();
    const env = await startEnvironment({ kuasard: false });
    started.push(env);
    const beforePod = snapshotHost();
    await runSleepingPod(env, 'left-running');

    const running = diffHost(beforePod, snapshotHost(), { scope: env.scope });
    assert.ok(
      running.mounts.some((m) => m.startsWith('overlay ')),
      `no rootfs mount in ${running.mounts.join(', ')}`,
    );
    assert.ok(
      running.cgroups.some((c) => c.includes(env.cgroupParent)),
      'no pod cgroup',
    );
    assert.ok(
      running.processes.some((p) => p.endsWith('sleep 3600')),
      'no container process',
    );
    assert.ok(
      running.processes.some((p) => p.includes('containerd-shim-runc-v2')),
      'no shim process',
    );
    assert.ok(
      running.links.some((l) => l.endsWith(`(master ${env.names.bridge})`)),
      'no pod veth',
    );

    await env.stop();
    assert.equal(existsSync(env.paths.dir), false);
    assert.deepEqual(diffHost(before, snapshotHost(), { scope: scopeOfDir(env.paths.dir) }), NO_LEAKS);
    assert.deepEqual(cniCacheEntriesOf(env.paths.dir), []);
  });

  it('cleans up after a failed start and says what failed', async () => {
    const before = snapshotHost();
    let dir = '';
    await assert.rejects(
      startEnvironment({
        kuasard: false,
        startTimeoutMs: 1,
        onProgress: (message) => (dir = /^environment in (\S+)/.exec(message)?.[1] ?? dir),
      }),
      /containerd did not come up within 0\.001 s: .*last lines of its log:/s,
    );
    assert.ok(dir, 'the environment reported its directory');
    assert.equal(existsSync(dir), false);
    assert.deepEqual(diffHost(before, snapshotHost(), { scope: scopeOfDir(dir) }), NO_LEAKS);
  });

  it('sweeps an environment whose owner was killed, pods and daemons included', async () => {
    const before = snapshotHost();
    const environmentModule = new URL('../../src/devenv/environment.js', import.meta.url).href;
    const script = `
      const { startEnvironment } = await import(${JSON.stringify(environmentModule)});
      const env = await startEnvironment({ kuasard: false });
      const pod = env.podConfig({ name: 'orphan' });
      const { podSandboxId } = await env.cri.runtime.runPodSandbox({ config: pod, runtimeHandler: 'runc' });
      console.log(env.paths.dir);
      setInterval(() => {}, 1000);
    `;
    const owner = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = createInterface({ input: owner.stdout });
    const dir = await new Promise<string>((resolve, reject) => {
      lines.once('line', resolve);
      owner.once('exit', (code) => reject(new Error(`the owner exited early (${code})`)));
    });
    owner.kill('SIGKILL');
    await new Promise((resolve) => owner.once('exit', resolve));
    assert.ok(existsSync(dir), 'the killed owner left its environment behind');

    const swept = await sweepStaleEnvironments();
    assert.ok(swept.includes(dir), `${dir} not in swept ${swept.join(', ')}`);
    assert.equal(existsSync(dir), false);
    assert.deepEqual(diffHost(before, snapshotHost(), { scope: scopeOfDir(dir) }), NO_LEAKS);
    assert.deepEqual(cniCacheEntriesOf(dir), []);
  });

  it('runs kuasard, registers its handlers in containerd, and restarts it', async () => {
    const env = await startEnvironment();
    started.push(env);
    assert.deepEqual(env.handlers.kuasar, { runc: 'kuasar-runc', wasm: 'kuasar-wasm', appkernel: 'kuasar-appkernel', vmm: 'kuasar-vmm' });
    const [containerd, kuasard] = env.scope.daemonPids;
    assert.ok(containerd && kuasard, 'both daemons run');

    const { info } = await env.cri.runtime.status({ verbose: true });
    assert.match(info['config'] ?? '', /"kuasar-runc"/, 'containerd knows the kuasar-runc handler');
    assert.match(info['config'] ?? '', /"kuasar-wasm"/, 'containerd knows the kuasar-wasm handler');
    assert.match(info['config'] ?? '', /"kuasar-appkernel"/, 'containerd knows the kuasar-appkernel handler');

    await env.restartKuasard();
    const [, restarted] = env.scope.daemonPids;
    assert.ok(restarted && restarted !== kuasard, 'kuasard runs again, as a new process');
  });
});
