// The appkernel kind at its memory limit, end to end through CRI. runsc enforces no container
// limit: the limit that holds is the pod's cgroup (what kubelet sets on a pod's cgroup parent),
// which holds the gVisor sandbox; the host's OOM killer then ends the whole sandbox. Shown here
// with a pod cgroup made and limited the way kubelet would: the pod goes NOTREADY and its
// container is reported exited, OOMKilled; nothing of the pod is left.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PodSandboxState } from '../../src/api/cri/runtime/v1/api_pb.js';
import { ContainerState } from '../../src/cri/client.js';
import { makeCgroup } from '../../src/devenv/cgroups.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { NO_LEAKS } from '../../src/devenv/leaks.js';
import { runPod } from '../../src/devenv/pod-runs.js';
import { containerConfig } from '../../src/devenv/pods.js';
import { cgroupPlaces, detectCgroupLayout, removeCgroup } from '../../src/linux/cgroups.js';

const MiB = 1024 * 1024;
const WAIT = { timeoutMs: 60_000 };

describe('appkernel kind: the pod at its memory limit', () => {
  let env: Environment;

  before(async () => {
    env = await startEnvironment();
  });

  after(async () => {
    await env?.stop();
  });

  it("ends the pod when its sandbox meets the pod cgroup's limit, and reports the container OOMKilled", async (t) => {
    const layout = await detectCgroupLayout();
    if (layout.mode === 'unified') return t.skip('the pod limit is written as cgroup v1 memory.limit_in_bytes');
    const podCgroup = `${env.cgroupParent}/appkernel-oom-pod`;
    await makeCgroup(podCgroup);
    try {
      const memory = (await cgroupPlaces(podCgroup, layout)).find((p) => p.hierarchy.controllers.includes('memory'));
      assert.ok(memory, 'the host has a memory controller');
      await writeFile(join(memory.dir, 'memory.limit_in_bytes'), String(160 * MiB));

      const pod = env.podConfig({ name: 'appkernel-oom' });
      pod.linux!.cgroupParent = podCgroup;
      const { leaks } = await runPod(env, env.handlers.kuasar['appkernel'] ?? '', pod, [env.paths.kuasarState], async (run) => {
        // dd's one 400 MiB block is memory of the sandbox's kernel, and so of the sandbox.
        const config = containerConfig({
          name: 'hog',
          image: env.images.busybox,
          command: ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=400M', 'count=1'],
        });
        const { containerId } = await env.cri.runtime.createContainer({ podSandboxId: run.podId, config, sandboxConfig: run.pod });
        await env.cri.runtime.startContainer({ containerId });
        const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
        assert.equal(status.reason, 'OOMKilled', `the container ended ${status.reason} (exit ${status.exitCode})`);

        const { status: podStatus } = await env.cri.runtime.podSandboxStatus({ podSandboxId: run.podId });
        assert.equal(podStatus?.state, PodSandboxState.SANDBOX_NOTREADY, 'the pod ended with its sandbox');
      });
      assert.deepEqual(leaks, NO_LEAKS);
    } finally {
      await removeCgroup(podCgroup);
    }
  });
});
