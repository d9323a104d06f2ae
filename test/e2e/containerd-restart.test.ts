// containerd restarts while kuasar pods run: it reconnects to every sandbox (Controller Status,
// Wait) and every task (Task Connect, Pids) from its own state, and nothing is lost.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ContainerState } from '../../src/cri/client.js';
import { criLogText, readContainerLog } from '../../src/cri/log.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { diffHost, NO_LEAKS, snapshotHost } from '../../src/devenv/leaks.js';
import { containerConfig, containerLogPath } from '../../src/devenv/pods.js';
import { readProcStat } from '../../src/linux/proc.js';

const WAIT = { timeoutMs: 30_000 };

describe('runc kind across a containerd restart', () => {
  let env: Environment;

  before(async () => {
    env = await startEnvironment();
  });

  after(async () => {
    await env?.stop();
  });

  it('keeps pods and containers, their state and their logs', async () => {
    const watched = [env.paths.kuasarState, `${env.paths.kuasarState}/runc.oci`];
    const before = snapshotHost({ dirs: watched });
    const pod = env.podConfig({ name: 'steady' });
    const { podSandboxId } = await env.cri.runtime.runPodSandbox({ config: pod, runtimeHandler: env.handlers.kuasar['runc'] });
    const ticker = containerConfig({
      name: 'ticker',
      image: env.images.busybox,
      command: ['sh', '-c', 'while true; do echo tick; sleep 0.2; done'],
    });
    const { containerId } = await env.cri.runtime.createContainer({ podSandboxId, config: ticker, sandboxConfig: pod });
    await env.cri.runtime.startContainer({ containerId });
    const status = await env.cri.runtime.containerStatus({ containerId, verbose: true });
    const pid = (JSON.parse(status.info['info'] ?? '{}') as { pid?: number }).pid ?? 0;
    const startTime = readProcStat(pid)?.startTime;
    assert.ok(startTime);

    await env.restartContainerd();

    const pods = await env.cri.runtime.listPodSandbox({});
    assert.deepEqual(
      pods.items.map((p) => [p.id, p.state]),
      [[podSandboxId, 0 /* SANDBOX_READY */]],
    );
    const after = await env.cri.runtime.containerStatus({ containerId, verbose: true });
    assert.equal(after.status?.state, ContainerState.CONTAINER_RUNNING, 'the container is still running for CRI');
    assert.equal((JSON.parse(after.info['info'] ?? '{}') as { pid?: number }).pid, pid, 'with the same pid');
    assert.equal(readProcStat(pid)?.startTime, startTime, 'and the same process');

    // The log keeps growing (the FIFO was reopened by the new containerd) and the pod stops cleanly.
    const logPath = containerLogPath(pod, ticker);
    const ticksNow = criLogText(await readContainerLog(logPath)).split('\n').length;
    let ticksLater = ticksNow;
    for (let i = 0; i < 100 && ticksLater <= ticksNow + 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      ticksLater = criLogText(await readContainerLog(logPath)).split('\n').length;
    }
    assert.ok(ticksLater > ticksNow + 2, 'output after the restart reaches the CRI log');

    await env.cri.runtime.stopContainer({ containerId, timeout: 1n });
    const stopped = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
    assert.notEqual(stopped.exitCode, 0);
    await env.cri.runtime.stopPodSandbox({ podSandboxId });
    await env.cri.runtime.removePodSandbox({ podSandboxId });
    assert.deepEqual(diffHost(before, snapshotHost({ dirs: watched }), { scope: env.scope }), NO_LEAKS);
  });
});
