// The development environment with containerd's OWN runc handler and no kuasard: it proves the
// CRI client, the locally built images, the containerd configuration and the leak checks before
// anything of kuasar is involved, and it is the baseline the benchmarks compare against.
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ContainerState } from '../../src/cri/client.js';
import { criLogText, readContainerLog } from '../../src/cri/log.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { diffHost, NO_LEAKS, processesOfPod, snapshotHost } from '../../src/devenv/leaks.js';
import { containerConfig, containerLogPath } from '../../src/devenv/pods.js';

const TIMEOUT_MS = 20_000;

describe('baseline: containerd runc handler in a private environment', () => {
  let env: Environment;

  before(async () => {
    env = await startEnvironment({ kuasard: false });
  });

  after(async () => {
    await env?.stop();
  });

  for (const hostNetwork of [true, false]) {
    const kind = hostNetwork ? 'host-network' : 'bridge-network';

    it(`runs a busybox container in a ${kind} pod, then leaves nothing behind`, async () => {
      // runc keeps one state directory per container below <root>/<containerd namespace>.
      const leakDirs = [join(env.paths.runcRoot, 'k8s.io')];
      const before = snapshotHost({ dirs: leakDirs });
      const pod = env.podConfig({ name: `baseline-${kind}`, hostNetwork });
      let podSandboxId = '';
      try {
        ({ podSandboxId } = await env.cri.runtime.runPodSandbox({ config: pod, runtimeHandler: env.handlers.baseline }));

        const container = containerConfig({
          name: 'hello',
          image: env.images.busybox,
          command: ['sh', '-c', 'echo hello-$HOSTNAME; ip -4 -o addr show'],
        });
        const { containerId } = await env.cri.runtime.createContainer({ podSandboxId, config: container, sandboxConfig: pod });
        await env.cri.runtime.startContainer({ containerId });
        const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, { timeoutMs: TIMEOUT_MS });
        assert.equal(status.exitCode, 0);

        const output = criLogText(await readContainerLog(containerLogPath(pod, container)), 'stdout');
        // containerd gives a host-network pod's containers the host's name.
        assert.match(output, new RegExp(`^hello-${hostNetwork ? hostname() : pod.hostname}$`, 'm'));
        if (hostNetwork) {
          assert.match(
            output,
            new RegExp(` ${env.names.bridge}\\s+inet ${env.subnet.gateway}/`),
            `the host's interfaces (our bridge) are not in:\n${output}`,
          );
        } else {
          const prefix = env.subnet.cidr.replace(/\.0\/24$/, '.');
          assert.match(
            output,
            new RegExp(`eth0\\s+inet ${prefix.replace(/\./g, '\\.')}\\d+/24`),
            `no address of ${env.subnet.cidr} in:\n${output}`,
          );
          assert.match(output, /lo\s+inet 127\.0\.0\.1\/8/, 'the pod has its loopback up');
        }

        // With the container gone, the pod holds only containerd's pause process.
        const { info } = await env.cri.runtime.podSandboxStatus({ podSandboxId, verbose: true });
        const pausePid = (JSON.parse(info['info'] ?? '{}') as { pid?: number }).pid;
        assert.ok(pausePid, 'the verbose sandbox status names the pause process');
        const podProcesses = processesOfPod({ namespacePaths: [`/proc/${pausePid}/ns/ipc`] });
        assert.deepEqual(
          podProcesses.map((p) => p.cmdline),
          ['/pause'],
        );
      } finally {
        if (podSandboxId) {
          await env.cri.runtime.stopPodSandbox({ podSandboxId });
          await env.cri.runtime.removePodSandbox({ podSandboxId });
        }
      }
      assert.deepEqual(diffHost(before, snapshotHost({ dirs: leakDirs }), { scope: env.scope }), NO_LEAKS);
    });
  }
});
