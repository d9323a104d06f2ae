// Resources and task state of the runc kind, end to end: an unmodified containerd 2.x driven
// through CRI (and, where CRI has no verb, through the Task API and the sandbox Controller that
// containerd itself calls). Every assertion is on what can be observed: CRI stats against the
// cgroup files, limits read back from /sys/fs/cgroup, the freezer state, CRI's OOMKilled reason,
// exit codes and how long a stop waited. Every pod is removed and must leave nothing behind.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fromBinary } from '@bufbuild/protobuf';
import { MetricsSchema as V1MetricsSchema } from '../../src/api/containerd/cgroups/v1/metrics_pb.js';
import { MetricsSchema as V2MetricsSchema } from '../../src/api/containerd/cgroups/v2/metrics_pb.js';
import { Task } from '../../src/api/containerd/runtime/task/v3/shim_pb.js';
import { Controller } from '../../src/api/containerd/services/sandbox/v1/sandbox_pb.js';
import { Status } from '../../src/api/containerd/types/task/task_pb.js';
import type { ContainerStats } from '../../src/api/cri/runtime/v1/api_pb.js';
import { ContainerState } from '../../src/cri/client.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { NO_LEAKS } from '../../src/devenv/leaks.js';
import { runPod, runToExit, startRunning, type PodRun } from '../../src/devenv/pod-runs.js';
import { containerConfig, limitedContainerConfig } from '../../src/devenv/pods.js';
import { cgroupPlaces, detectCgroupLayout } from '../../src/linux/cgroups.js';
import { createGrpcClient } from '../../src/rpc/grpc.js';
import { TtrpcClient } from '../../src/rpc/ttrpc/client.js';
import { typedClient, type TypedClient } from '../../src/rpc/ttrpc/typed.js';

type TaskClient = TypedClient<typeof Task.method>;

const MiB = 1024n * 1024n;
const WAIT = { timeoutMs: 30_000 };

describe('runc kind: stats, updates, pause, OOM and stop timeouts through CRI', () => {
  let env: Environment;
  let sandboxDirOf: (podId: string) => string;
  let unified: boolean;

  before(async () => {
    env = await startEnvironment();
    sandboxDirOf = (podId) => join(env.paths.kuasarState, 'runc', podId);
    unified = (await detectCgroupLayout()).mode === 'unified';
  });

  after(async () => {
    await env?.stop();
  });

  async function withPod(name: string, body: (run: PodRun) => Promise<void>) {
    const watched = [env.paths.kuasarState, `${env.paths.kuasarState}/runc.oci`];
    const { leaks } = await runPod(env, env.handlers.kuasar['runc']!, env.podConfig({ name }), watched, body);
    assert.deepEqual(leaks, NO_LEAKS, 'the pod left nothing behind');
  }

  /** A file of the container's cgroup: in the v1 controller's hierarchy, or the unified directory. */
  async function cgroupFile(
    run: PodRun,
    containerId: string,
    file: { v1?: [controller: string, name: string]; v2?: string },
  ): Promise<string> {
    const spec = JSON.parse(readFileSync(join(sandboxDirOf(run.podId), 'containers', containerId, 'config.json'), 'utf8')) as {
      linux: { cgroupsPath: string };
    };
    const places = await cgroupPlaces(spec.linux.cgroupsPath);
    const name = unified ? file.v2 : file.v1?.[1];
    const place = unified
      ? places.find((p) => p.hierarchy.version === 2)
      : places.find((p) => p.hierarchy.controllers.includes(file.v1?.[0] ?? ''));
    assert.ok(place && name, `a cgroup file for ${JSON.stringify(file)} on this host`);
    return readFileSync(join(place.dir, name), 'utf8').trim();
  }

  /** A busybox container running `sh -c script`. */
  function startShell(run: PodRun, name: string, script: string) {
    return startRunning(env, run, containerConfig({ name, image: env.images.busybox, command: ['sh', '-c', script] }));
  }

  async function withTaskApi(run: PodRun, body: (task: TaskClient) => Promise<void>) {
    const client = await TtrpcClient.connect(join(sandboxDirOf(run.podId), 'task.sock'));
    try {
      await body(typedClient(client, Task));
    } finally {
      client.close();
    }
  }

  it('reports CPU and memory in ContainerStats and ListContainerStats, matching the cgroup', async () => {
    await withPod('stats', async (run) => {
      // Burns CPU for a moment, then holds 24 MiB in the pod's /dev/shm (tmpfs pages are charged
      // to the writer's cgroup and count in the working set).
      const config = containerConfig({
        name: 'busy',
        image: env.images.busybox,
        command: [
          'sh',
          '-c',
          'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; head -c 25165824 /dev/zero > /dev/shm/blob; echo ready; exec sleep 3600',
        ],
      });
      const started = Date.now();
      const { containerId } = await startRunning(env, run, config);

      let stats: ContainerStats | undefined;
      const deadline = Date.now() + 30_000;
      for (;;) {
        stats = (await env.cri.runtime.containerStats({ containerId })).stats;
        if ((stats?.memory?.workingSetBytes?.value ?? 0n) >= 24n * MiB) break;
        assert.ok(Date.now() < deadline, `working set still ${stats?.memory?.workingSetBytes?.value} bytes`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      const elapsedNs = BigInt(Date.now() - started) * 1_000_000n;
      const cpu = stats?.cpu?.usageCoreNanoSeconds?.value ?? 0n;
      const workingSet = stats!.memory!.workingSetBytes!.value;
      assert.equal(stats?.attributes?.id, containerId);
      assert.ok(cpu >= 10_000_000n, `the busy loop used CPU: ${cpu} ns`);
      assert.ok(cpu <= elapsedNs * BigInt(availableParallelism()), `CPU time ${cpu} ns fits in ${elapsedNs} ns of wall time`);
      assert.ok(workingSet <= 128n * MiB, `working set ${workingSet} bytes is about the 24 MiB written`);
      assert.ok((stats?.memory?.usageBytes?.value ?? 0n) >= workingSet, 'usage includes the working set');

      // The cgroup's own counters only grow: they are at least what CRI reported a moment ago.
      const usageFile = await cgroupFile(run, containerId, { v1: ['cpuacct', 'cpuacct.usage'], v2: 'cpu.stat' });
      const cgroupCpu = unified ? BigInt(/usage_usec (\d+)/.exec(usageFile)![1]!) * 1000n : BigInt(usageFile);
      assert.ok(cgroupCpu >= cpu, `cgroup CPU ${cgroupCpu} >= CRI's ${cpu}`);

      const list = await env.cri.runtime.listContainerStats({ filter: { podSandboxId: run.podId } });
      assert.deepEqual(
        list.stats.map((s) => s.attributes?.id),
        [containerId],
      );
      assert.ok((list.stats[0]?.memory?.workingSetBytes?.value ?? 0n) >= 24n * MiB);

      // Task Stats itself: the bare type name CRI checks, and the processes of the container.
      await withTaskApi(run, async (task) => {
        const { stats: any } = await task.stats({ id: containerId });
        assert.equal(any?.typeUrl, unified ? 'io.containerd.cgroups.v2.Metrics' : 'io.containerd.cgroups.v1.Metrics');
        const pids = unified ? fromBinary(V2MetricsSchema, any!.value).pids : fromBinary(V1MetricsSchema, any!.value).pids;
        assert.equal(pids?.current, 1n, "one process: the shell exec'd sleep");
      });
    });
  });

  it("answers the controller's Metrics with the pod cgroup's counters", async () => {
    await withPod('metrics', async (run) => {
      await startShell(run, 'holder', 'head -c 16777216 /dev/zero > /dev/shm/blob; exec sleep 3600');
      const controller = createGrpcClient(Controller, `unix://${env.kuasarSockets['runc']}`, {
        metadata: { 'containerd-namespace': 'k8s.io' },
        timeoutMs: 10_000,
      });
      try {
        let usage = 0n;
        const deadline = Date.now() + 20_000;
        while (usage < 16n * MiB) {
          assert.ok(Date.now() < deadline, `pod memory usage still ${usage}`);
          const { metrics } = await controller.metrics({ sandboxId: run.podId });
          assert.equal(metrics?.id, run.podId);
          assert.ok((metrics?.timestamp?.seconds ?? 0n) > 0n, 'the sample has a timestamp');
          const data = metrics!.data!;
          usage = unified
            ? (fromBinary(V2MetricsSchema, data.value).memory?.usage ?? 0n)
            : (fromBinary(V1MetricsSchema, data.value).memory?.usage?.usage ?? 0n);
          if (usage < 16n * MiB) await new Promise((resolve) => setTimeout(resolve, 200));
        }
      } finally {
        controller.close();
      }
    });
  });

  it("applies UpdateContainerResources to the container's cgroup", async () => {
    await withPod('update', async (run) => {
      const config = limitedContainerConfig(
        { name: 'limited', image: env.images.busybox, command: ['sleep', '3600'] },
        { memoryLimitInBytes: 128n * MiB, cpuPeriod: 100_000n, cpuQuota: 100_000n, cpuShares: 1024n },
      );
      const { containerId } = await startRunning(env, run, config);
      const memory = () => cgroupFile(run, containerId, { v1: ['memory', 'memory.limit_in_bytes'], v2: 'memory.max' });
      const quota = () => cgroupFile(run, containerId, { v1: ['cpu', 'cpu.cfs_quota_us'], v2: 'cpu.max' });
      assert.equal(await memory(), String(128n * MiB));
      assert.equal(await quota(), unified ? '100000 100000' : '100000');

      await env.cri.runtime.updateContainerResources({
        containerId,
        linux: { memoryLimitInBytes: 64n * MiB, cpuPeriod: 100_000n, cpuQuota: 50_000n, cpuShares: 512n },
      });
      assert.equal(await memory(), String(64n * MiB));
      assert.equal(await quota(), unified ? '50000 100000' : '50000');
      if (!unified) assert.equal(await cgroupFile(run, containerId, { v1: ['cpu', 'cpu.shares'] }), '512');
      const { status } = await env.cri.runtime.containerStatus({ containerId });
      assert.equal(status?.resources?.linux?.memoryLimitInBytes, 64n * MiB, 'CRI reports the new limits');
      assert.equal(status?.state, ContainerState.CONTAINER_RUNNING);
    });
  });

  it('pauses and resumes a container (Task Pause/Resume): PAUSED, frozen, and stoppable while paused', async () => {
    await withPod('pause', async (run) => {
      const { containerId } = await startRunning(
        env,
        run,
        containerConfig({ name: 'sleeper', image: env.images.busybox, command: ['sleep', '3600'] }),
      );
      const frozen = async () =>
        ['1', 'FROZEN'].includes(await cgroupFile(run, containerId, { v1: ['freezer', 'freezer.state'], v2: 'cgroup.freeze' }));
      await withTaskApi(run, async (task) => {
        await task.pause({ id: containerId });
        assert.equal((await task.state({ id: containerId })).status, Status.PAUSED);
        assert.equal(await frozen(), true, 'the cgroup is frozen');
        await task.resume({ id: containerId });
        assert.equal((await task.state({ id: containerId })).status, Status.RUNNING);
        assert.equal(await frozen(), false, 'the cgroup is thawed');
        // Left paused: removing the pod must still stop it.
        await task.pause({ id: containerId });
      });
    });
  });

  it('reports a container killed at its memory limit as OOMKilled, and another SIGKILL as Error', async () => {
    await withPod('oom', async (run) => {
      const hog = await runToExit(
        env,
        run,
        limitedContainerConfig(
          { name: 'hog', image: env.images.busybox, command: ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'] },
          { memoryLimitInBytes: 32n * MiB },
        ),
      );
      assert.equal(hog.status.exitCode, 137);
      assert.equal(hog.status.reason, 'OOMKilled');

      // A child killed by SIGKILL (the init itself would be immune, as PID 1 of its namespace).
      const killed = await runToExit(
        env,
        run,
        containerConfig({ name: 'killed', image: env.images.busybox, command: ['sh', '-c', "sh -c 'kill -9 $$'; exit $?"] }),
      );
      assert.equal(killed.status.exitCode, 137);
      assert.equal(killed.status.reason, 'Error', "a SIGKILL that is not the OOM killer's is not OOMKilled");
    });
  });

  it('StopContainer sends SIGTERM and waits its timeout before SIGKILL', async () => {
    await withPod('stop-timeout', async (run) => {
      const stubborn = await startShell(run, 'stubborn', 'trap "echo got TERM" TERM; echo up; while :; do sleep 0.1; done');
      const polite = await startShell(run, 'polite', 'trap "echo bye; exit 0" TERM; while :; do sleep 0.1; done');

      const started = Date.now();
      await env.cri.runtime.stopContainer({ containerId: stubborn.containerId, timeout: 2n });
      const waited = Date.now() - started;
      const stubbornStatus = await env.cri.waitForContainerState(stubborn.containerId, ContainerState.CONTAINER_EXITED, WAIT);
      assert.ok(waited >= 2000, `the stop waited the 2 s timeout (${waited} ms)`);
      assert.equal(stubbornStatus.exitCode, 137, 'then SIGKILL');

      await env.cri.runtime.stopContainer({ containerId: polite.containerId, timeout: 60n });
      const politeStatus = await env.cri.waitForContainerState(polite.containerId, ContainerState.CONTAINER_EXITED, WAIT);
      assert.equal(politeStatus.exitCode, 0, 'SIGTERM alone ended it: no SIGKILL after the timeout');
    });
  });

  it("the controller's Stop gives containers timeout_secs after SIGTERM, then SIGKILL", async () => {
    await withPod('pod-stop-timeout', async (run) => {
      const stubborn = await startShell(run, 'stubborn', 'trap "" TERM; while :; do sleep 0.1; done');
      const polite = await startShell(run, 'polite', 'trap "exit 0" TERM; while :; do sleep 0.1; done');
      const controller = createGrpcClient(Controller, `unix://${env.kuasarSockets['runc']}`, {
        metadata: { 'containerd-namespace': 'k8s.io' },
        timeoutMs: 30_000,
      });
      try {
        const started = Date.now();
        await controller.stop({ sandboxId: run.podId, timeoutSecs: 2 });
        const waited = Date.now() - started;
        assert.ok(waited >= 2000, `Stop waited the 2 s grace period (${waited} ms)`);
        const status = await controller.status({ sandboxId: run.podId });
        assert.equal(status.state, 'SANDBOX_NOTREADY');
      } finally {
        controller.close();
      }
      const stubbornStatus = await env.cri.waitForContainerState(stubborn.containerId, ContainerState.CONTAINER_EXITED, WAIT);
      const politeStatus = await env.cri.waitForContainerState(polite.containerId, ContainerState.CONTAINER_EXITED, WAIT);
      assert.equal(stubbornStatus.exitCode, 137, 'the one ignoring SIGTERM was killed');
      assert.equal(politeStatus.exitCode, 0, 'the one handling SIGTERM ended by itself');
    });
  });
});
