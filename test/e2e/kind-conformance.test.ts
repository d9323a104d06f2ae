// What every kind must do, run for every registered kind through an unmodified containerd and
// CRI: a container's whole lifecycle, the errors for unknown ids, deletes that may come twice,
// a clear answer for what the kind does not support (its declared capabilities), and what a
// crash of kuasard leaves of a running container (as the kind declares it). A new kind passes
// this suite before anything kind-specific is tested.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { PodSandboxConfig } from '../../src/api/cri/runtime/v1/api_pb.js';
import { ContainerState } from '../../src/cri/client.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { NO_LEAKS, untilInitReaped } from '../../src/devenv/leaks.js';
import { runPod } from '../../src/devenv/pod-runs.js';
import { containerConfig } from '../../src/devenv/pods.js';
import { untilAnswered } from '../../src/devenv/retry.js';
import { idleWorkload } from '../../src/devenv/workloads.js';
import { KINDS } from '../../src/kinds/index.js';

const WAIT = { timeoutMs: 30_000 };

describe('kind conformance', () => {
  let env: Environment;

  before(async () => {
    env = await startEnvironment();
  });

  after(async () => {
    await env?.stop();
  });

  for (const kind of KINDS) {
    const { capabilities } = kind;

    describe(`the ${kind.name} kind`, () => {
      /** Runs a pod of the kind, calls `body`, removes the pod, and checks that nothing of it stayed. */
      async function withPod(name: string, body: (podId: string, pod: PodSandboxConfig) => Promise<void>) {
        const pod = env.podConfig({ name: `${kind.name}-${name}` });
        // After a crash of kuasard, what ends is PID 1's to reap.
        const settle = () => untilInitReaped(env.scope);
        const { leaks } = await runPod(
          env,
          env.handlers.kuasar[kind.name] ?? '',
          pod,
          [env.paths.kuasarState],
          (run) => body(run.podId, run.pod),
          {
            settle,
          },
        );
        assert.deepEqual(leaks, NO_LEAKS);
      }

      async function startIdle(podId: string, pod: PodSandboxConfig): Promise<string> {
        const { image, command } = idleWorkload(kind.name);
        const config = containerConfig({ name: 'idle', image, command });
        const { containerId } = await env.cri.runtime.createContainer({ podSandboxId: podId, config, sandboxConfig: pod });
        await env.cri.runtime.startContainer({ containerId });
        return containerId;
      }

      it('runs a container through its whole lifecycle: created, running, stopped, removed', async () => {
        await withPod('lifecycle', async (podId, pod) => {
          const { image, command } = idleWorkload(kind.name);
          const config = containerConfig({ name: 'idle', image, command });
          const { containerId } = await env.cri.runtime.createContainer({ podSandboxId: podId, config, sandboxConfig: pod });
          assert.equal((await env.cri.runtime.containerStatus({ containerId })).status?.state, ContainerState.CONTAINER_CREATED);
          await env.cri.runtime.startContainer({ containerId });
          const running = await env.cri.runtime.containerStatus({ containerId, verbose: true });
          assert.equal(running.status?.state, ContainerState.CONTAINER_RUNNING);
          assert.ok(((JSON.parse(running.info['info'] ?? '{}') as { pid?: number }).pid ?? 0) > 0, 'a running container has a pid');
          await env.cri.runtime.stopContainer({ containerId, timeout: 2n });
          const stopped = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
          assert.ok(stopped.exitCode !== 0, `a stopped container reports the signal it died of (exit ${stopped.exitCode})`);
          await env.cri.runtime.removeContainer({ containerId });
          const listed = await env.cri.runtime.listContainers({ filter: { podSandboxId: podId } });
          assert.deepEqual(listed.containers, []);
        });
      });

      it('answers unknown ids with not found, and takes a stop or remove that comes twice', async () => {
        await withPod('errors', async (podId, pod) => {
          await assert.rejects(env.cri.runtime.startContainer({ containerId: 'no-such-container' }), /not found/i);
          const containerId = await startIdle(podId, pod);
          await env.cri.runtime.stopContainer({ containerId, timeout: 0n });
          await env.cri.runtime.stopContainer({ containerId, timeout: 0n });
          await env.cri.runtime.removeContainer({ containerId });
          await env.cri.runtime.removeContainer({ containerId });
        });
      });

      it('undoes a container whose start fails (its program is missing): nothing of it stays, and the pod goes on', async () => {
        await withPod('missing', async (podId, pod) => {
          const { image } = idleWorkload(kind.name);
          const config = containerConfig({ name: 'missing', image, command: ['/no-such-program'] });
          let containerId = '';
          await assert.rejects(async () => {
            ({ containerId } = await env.cri.runtime.createContainer({ podSandboxId: podId, config, sandboxConfig: pod }));
            await env.cri.runtime.startContainer({ containerId });
          }, /no-such-program/);
          if (containerId) await env.cri.runtime.removeContainer({ containerId });
          const idle = await startIdle(podId, pod);
          assert.equal((await env.cri.runtime.containerStatus({ containerId: idle })).status?.state, ContainerState.CONTAINER_RUNNING);
        });
      });

      it(`${capabilities.exec ? 'runs' : 'refuses, clearly,'} an exec, and ${capabilities.updateResources ? 'applies' : 'refuses'} new resources`, async () => {
        await withPod('capabilities', async (podId, pod) => {
          const containerId = await startIdle(podId, pod);
          const exec = env.cri.runtime.execSync({ containerId, cmd: ['echo', 'from an exec'], timeout: 10n });
          if (capabilities.exec) assert.equal(Buffer.from((await exec).stdout).toString(), 'from an exec\n');
          else await assert.rejects(exec, /exec is not supported by the \w+ kind/);
          const update = env.cri.runtime.updateContainerResources({ containerId, linux: { cpuShares: 512n } });
          if (capabilities.updateResources) await update;
          else await assert.rejects(update, /not supported by the \w+ kind/);
          // The container is served as before.
          assert.equal((await env.cri.runtime.containerStatus({ containerId })).status?.state, ContainerState.CONTAINER_RUNNING);
        });
      });

      it(`after kuasard crashes, reports a running container ${capabilities.restart.containers ? 'still running' : 'exited with 255'}, and removes it`, async () => {
        await withPod('restart', async (podId, pod) => {
          const containerId = await startIdle(podId, pod);
          await env.restartKuasard({ crash: true });
          if (capabilities.restart.containers) {
            const status = await untilAnswered(() => env.cri.runtime.containerStatus({ containerId }), WAIT.timeoutMs);
            assert.equal(status.status?.state, ContainerState.CONTAINER_RUNNING);
          } else {
            const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
            assert.equal(status.exitCode, 255);
          }
          // containerd's controller connection comes back after its reconnect backoff; then the pod is removed.
          await untilAnswered(() => env.cri.runtime.podSandboxStatus({ podSandboxId: podId }), WAIT.timeoutMs);
        });
      });
    });
  }
});
