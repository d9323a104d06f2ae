// Resources of the vmm kind end to end, under TCG: an unmodified containerd 2.x driven through CRI
// (and, for pause, which CRI has no verb for, through the Task API that containerd itself calls).
// A container's figures, limits, freezer and OOM kills are its cgroup's in the guest (cgroup v2);
// the pod's are its cgroup's on the host, where QEMU runs. Every assertion is on what can be
// observed: CRI stats against a busy loop and what was written to memory, limits read back from
// inside the guest, CPU time that stands still while frozen, CRI's OOMKilled reason, QEMU's own
// cgroup and size, exit codes after a stop. Every pod is removed and must leave nothing: no QEMU,
// mount, cgroup, socket or file.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fromBinary } from '@bufbuild/protobuf';
import { MetricsSchema as V1MetricsSchema } from '../../src/api/containerd/cgroups/v1/metrics_pb.js';
import { MetricsSchema as V2MetricsSchema } from '../../src/api/containerd/cgroups/v2/metrics_pb.js';
import { Task } from '../../src/api/containerd/runtime/task/v3/shim_pb.js';
import { Controller } from '../../src/api/containerd/services/sandbox/v1/sandbox_pb.js';
import { Status } from '../../src/api/containerd/types/task/task_pb.js';
import { PodSandboxState, type ContainerConfig, type PodSandboxConfig } from '../../src/api/cri/runtime/v1/api_pb.js';
import { ContainerState } from '../../src/cri/client.js';
import { makeCgroup } from '../../src/devenv/cgroups.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { diffHost, NO_LEAKS, snapshotHost } from '../../src/devenv/leaks.js';
import { vmProcesses } from '../../src/devenv/vm-processes.js';
import { runPod, runToExit, startRunning, type PodRun } from '../../src/devenv/pod-runs.js';
import { containerConfig, limitedContainerConfig } from '../../src/devenv/pods.js';
import { cgroupPlaces, detectCgroupLayout, removeCgroup } from '../../src/linux/cgroups.js';
import { createGrpcClient } from '../../src/rpc/grpc.js';
import { TtrpcClient } from '../../src/rpc/ttrpc/client.js';
import { typedClient, type TypedClient } from '../../src/rpc/ttrpc/typed.js';

type TaskClient = TypedClient<typeof Task.method>;

const MiB = 1024n * 1024n;
/** Under TCG a VM boots in seconds, more on a busy host; CRI waits are generous. */
const WAIT = { timeoutMs: 60_000 };

/** A line of /proc/<pid>/status, in bytes (its kB figure). */
function procStatusBytes(pid: number, field: string): bigint {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(match, `${field} in /proc/${pid}/status`);
  return BigInt(match[1]!) * 1024n;
}

async function pollUntil<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + WAIT.timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    assert.ok(Date.now() < deadline, `${what}: still ${String(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

describe('vmm kind: stats, updates, pause, OOM, stop timeouts and the pod cgroup through CRI', () => {
  let env: Environment;

  before(async () => {
    env = await startEnvironment();
  });

  after(async () => {
    await env?.stop();
  });

  const handler = () => env.handlers.kuasar['vmm'] ?? '';

  const qemuProcesses = (sandboxId?: string) => vmProcesses(env.scope, sandboxId);

  /** Runs `pod` (default: a plain one named `name`) on kuasar-vmm, calls `body`, removes the pod and checks that nothing stayed. */
  async function withPod(name: string, body: (run: PodRun) => Promise<void>, pod: PodSandboxConfig = env.podConfig({ name })) {
    const { leaks } = await runPod(env, handler(), pod, [env.paths.kuasarState], body);
    assert.deepEqual(leaks, NO_LEAKS, 'the pod left nothing behind');
    assert.deepEqual(
      qemuProcesses().map((p) => p.cmdline),
      [],
      'no QEMU process is left',
    );
  }

  const shell = (name: string, script: string): ContainerConfig =>
    containerConfig({ name, image: env.images.busybox, command: ['sh', '-c', script] });

  /** Runs `cmd` in the container (in the guest) and returns its stdout; fails on a non-zero exit. */
  async function execOut(containerId: string, cmd: string[]): Promise<string> {
    const result = await env.cri.runtime.execSync({ containerId, cmd, timeout: 30n });
    assert.equal(result.exitCode, 0, Buffer.from(result.stderr).toString());
    return Buffer.from(result.stdout).toString().trim();
  }

  async function withTaskApi(run: PodRun, body: (task: TaskClient) => Promise<void>) {
    const client = await TtrpcClient.connect(join(env.paths.kuasarState, 'vmm', run.podId, 'task.sock'));
    try {
      await body(typedClient(client, Task));
    } finally {
      client.close();
    }
  }

  const qemuOf = (podId: string) => {
    const [qemu, ...others] = qemuProcesses(podId);
    assert.ok(qemu, 'the pod has a QEMU process');
    assert.deepEqual(others, [], 'and only one');
    return qemu;
  };

  it("reports a container's CPU and memory from its cgroup in the guest: ContainerStats, ListContainerStats, Task Stats", async (t) => {
    await withPod('vmm-stats', async (run) => {
      // Burns CPU for a moment, then holds 24 MiB in its /dev/shm (a tmpfs in the guest, whose
      // pages are charged to the writer's cgroup and count in the working set).
      const { containerId } = await startRunning(
        env,
        run,
        shell(
          'busy',
          'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; head -c 25165824 /dev/zero > /dev/shm/blob; echo ready; exec sleep 3600',
        ),
      );
      const stats = await pollUntil(
        'working set of the container',
        async () => (await env.cri.runtime.containerStats({ containerId })).stats,
        (s) => (s?.memory?.workingSetBytes?.value ?? 0n) >= 24n * MiB,
      );
      const vmBytes = BigInt(/-m (\d+)M/.exec(qemuOf(run.podId).cmdline)?.[1] ?? '0') * MiB;
      const cpu = stats?.cpu?.usageCoreNanoSeconds?.value ?? 0n;
      const workingSet = stats!.memory!.workingSetBytes!.value;
      assert.equal(stats?.attributes?.id, containerId);
      assert.ok(cpu >= 10_000_000n, `the busy loop used CPU in the guest: ${cpu} ns`);
      assert.ok(vmBytes > 0n && workingSet < vmBytes, `working set ${workingSet} bytes is within the VM's ${vmBytes} bytes`);
      assert.ok(workingSet <= 64n * MiB, `working set ${workingSet} bytes is about the 24 MiB written, not the guest's`);
      t.diagnostic(`container: CPU ${cpu / 1_000_000n} ms, working set ${workingSet / 1024n} KiB, VM ${vmBytes / MiB} MiB`);

      const list = await env.cri.runtime.listContainerStats({ filter: { podSandboxId: run.podId } });
      assert.deepEqual(
        list.stats.map((s) => s.attributes?.id),
        [containerId],
      );
      assert.ok((list.stats[0]?.memory?.workingSetBytes?.value ?? 0n) >= 24n * MiB);

      // Task Stats itself: cgroup v2's type (the guest's), whatever the host has.
      await withTaskApi(run, async (task) => {
        const { stats: any } = await task.stats({ id: containerId });
        assert.equal(any?.typeUrl, 'io.containerd.cgroups.v2.Metrics');
        const metrics = fromBinary(V2MetricsSchema, any!.value);
        assert.equal(metrics.pids?.current, 1n, "one process: the shell exec'd sleep");
        assert.ok((metrics.memory?.shmem ?? 0n) >= 24n * MiB, `the 24 MiB in /dev/shm are shmem: ${metrics.memory?.shmem}`);
        assert.ok((metrics.cpu?.usageUsec ?? 0n) * 1000n >= cpu, 'the CPU counter only grows');
      });
    });
  });

  it("runs QEMU in the pod's cgroup: the VM is sized under its memory limit, counted in CRI's pod stats and the sandbox's Metrics", async (t) => {
    const layout = await detectCgroupLayout();
    if (layout.mode === 'unified') return t.skip('the pod limit is written as cgroup v1 memory.limit_in_bytes');
    const podCgroup = `${env.cgroupParent}/vmm-pod-cgroup`;
    await makeCgroup(podCgroup);
    try {
      const memory = (await cgroupPlaces(podCgroup, layout)).find((p) => p.hierarchy.controllers.includes('memory'));
      assert.ok(memory, 'the host has a memory controller');

      // A limit too small for a guest and QEMU: refused at once, naming what the pod needs.
      writeFileSync(join(memory.dir, 'memory.limit_in_bytes'), String(200n * MiB));
      const small = env.podConfig({ name: 'vmm-too-small' });
      small.linux!.cgroupParent = podCgroup;
      const before = snapshotHost({ dirs: [env.paths.kuasarState] });
      await assert.rejects(
        env.cri.runtime.runPodSandbox({ config: small, runtimeHandler: handler() }),
        /the pod's memory limit \(200 MiB\) cannot hold a VM: .*RuntimeClass a memory overhead of at least \d+ MiB/,
      );
      assert.deepEqual(diffHost(before, snapshotHost({ dirs: [env.paths.kuasarState] }), { scope: env.scope }), NO_LEAKS);

      // 512 MiB: the VM (by default 256 MiB and the guest's 160) gets what is left after QEMU's own
      // 160 MiB and TCG's 64 MiB translation buffer: 288 MiB.
      writeFileSync(join(memory.dir, 'memory.limit_in_bytes'), String(512n * MiB));
      const pod = env.podConfig({ name: 'vmm-pod-cgroup' });
      pod.linux!.cgroupParent = podCgroup;
      await withPod(
        'vmm-pod-cgroup',
        async (run) => {
          await startRunning(env, run, shell('holder', 'head -c 16777216 /dev/zero > /dev/shm/blob; exec sleep 3600'));
          const qemu = qemuOf(run.podId);
          assert.match(qemu.cmdline, / -m 288M /, "the VM's RAM fits under the limit with QEMU's own");
          const cgroups = readFileSync(`/proc/${qemu.pid}/cgroup`, 'utf8');
          assert.match(cgroups, new RegExp(`:memory:${podCgroup}/kuasar-vmm-${run.podId}$`, 'm'), "QEMU is in the pod's memory cgroup");
          assert.match(cgroups, new RegExp(`:cpuacct:${podCgroup}/kuasar-vmm-${run.podId}$`, 'm'), "and in the pod's CPU cgroup");

          // QEMU's anonymous memory (the guest's RAM it touched, and its own) was all charged
          // to the pod: QEMU ran in its cgroup from its first page.
          const anon = procStatusBytes(qemu.pid, 'RssAnon');
          const { stats } = await env.cri.runtime.podSandboxStats({ podSandboxId: run.podId });
          const workingSet = stats?.linux?.memory?.workingSetBytes?.value ?? 0n;
          assert.ok(workingSet >= (anon * 9n) / 10n, `CRI's pod working set ${workingSet} holds QEMU's anonymous memory ${anon}`);
          assert.ok(workingSet < 512n * MiB, `and stays under the pod's limit: ${workingSet}`);
          const podCpu = stats?.linux?.cpu?.usageCoreNanoSeconds?.value ?? 0n;
          assert.ok(podCpu > 1_000_000_000n, "the VM's boot is the pod's CPU time");
          t.diagnostic(`QEMU anonymous ${anon / 1024n} KiB; CRI pod working set ${workingSet / 1024n} KiB, CPU ${podCpu / 1_000_000n} ms`);

          const controller = createGrpcClient(Controller, `unix://${env.kuasarSockets['vmm']}`, {
            metadata: { 'containerd-namespace': 'k8s.io' },
            timeoutMs: 10_000,
          });
          try {
            const { metrics } = await controller.metrics({ sandboxId: run.podId });
            assert.equal(metrics?.id, run.podId);
            const usage = fromBinary(V1MetricsSchema, metrics!.data!.value).memory?.usage?.usage ?? 0n;
            assert.ok(usage >= (anon * 9n) / 10n, `the sandbox's Metrics count QEMU's memory: ${usage} >= ${anon}`);
          } finally {
            controller.close();
          }

          // More than the guest has: the guest's OOM killer ends it (CRI: OOMKilled), not the host's
          // QEMU, which the guest's whole RAM and QEMU's own fit the pod's limit.
          // One block of 90% of the guest's RAM: the kernel lets it be allocated (it is less than
          // the RAM) but cannot back it beside its own and the agent's.
          const hog = await runToExit(
            env,
            run,
            shell('hog', "exec dd if=/dev/zero of=/dev/null bs=$(( $(awk '/^MemTotal/ { print $2 }' /proc/meminfo) * 9 / 10 ))k count=1"),
            WAIT.timeoutMs,
          );
          assert.equal(hog.status.reason, 'OOMKilled', `the hog ended ${hog.status.reason} (exit ${hog.status.exitCode})`);
          assert.equal(qemuOf(run.podId).pid, qemu.pid, 'QEMU runs on');
          const { status: podStatus } = await env.cri.runtime.podSandboxStatus({ podSandboxId: run.podId });
          assert.equal(podStatus?.state, PodSandboxState.SANDBOX_READY, 'the pod is still ready');
          const hostOom = readFileSync(join(memory.dir, 'memory.oom_control'), 'utf8');
          assert.match(hostOom, /^oom_kill 0$/m, "the host's OOM killer never struck in the pod's cgroup");
        },
        pod,
      );
    } finally {
      await removeCgroup(podCgroup);
    }
  });

  it('reports a container killed at its memory limit in the guest as OOMKilled, and another SIGKILL as Error', async () => {
    await withPod('vmm-oom', async (run) => {
      const hog = await runToExit(
        env,
        run,
        limitedContainerConfig(
          { name: 'hog', image: env.images.busybox, command: ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'] },
          { memoryLimitInBytes: 32n * MiB },
        ),
        WAIT.timeoutMs,
      );
      assert.equal(hog.status.exitCode, 137);
      assert.equal(hog.status.reason, 'OOMKilled');

      // A child killed by SIGKILL (the init itself would be immune, as PID 1 of its namespace).
      const killed = await runToExit(env, run, shell('killed', "sh -c 'kill -9 $$'; exit $?"), WAIT.timeoutMs);
      assert.equal(killed.status.exitCode, 137);
      assert.equal(killed.status.reason, 'Error', "a SIGKILL that is not the OOM killer's is not OOMKilled");
    });
  });

  it("applies UpdateContainerResources to the container's cgroup in the guest, read back from inside", async () => {
    await withPod('vmm-update', async (run) => {
      const config = limitedContainerConfig(
        { name: 'limited', image: env.images.busybox, command: ['sleep', '3600'] },
        { memoryLimitInBytes: 128n * MiB, cpuPeriod: 100_000n, cpuQuota: 100_000n, cpuShares: 1024n },
      );
      const { containerId } = await startRunning(env, run, config);
      // The container has a cgroup namespace of its own: its /sys/fs/cgroup is its cgroup in the guest.
      assert.equal(await execOut(containerId, ['cat', '/proc/self/cgroup']), '0::/');
      const limits = () => execOut(containerId, ['cat', '/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/cpu.max']);
      assert.equal(await limits(), `${128n * MiB}\n100000 100000`);

      await env.cri.runtime.updateContainerResources({
        containerId,
        linux: { memoryLimitInBytes: 64n * MiB, cpuPeriod: 100_000n, cpuQuota: 50_000n, cpuShares: 512n },
      });
      assert.equal(await limits(), `${64n * MiB}\n50000 100000`);
      const { status } = await env.cri.runtime.containerStatus({ containerId });
      assert.equal(status?.resources?.linux?.memoryLimitInBytes, 64n * MiB, 'CRI reports the new limits');
      assert.equal(status?.state, ContainerState.CONTAINER_RUNNING);
    });
  });

  it('pauses and resumes a container through the Task API: PAUSED, its CPU time stands still, then runs on', async () => {
    await withPod('vmm-pause', async (run) => {
      // A busy loop: its CPU time grows whenever it is not frozen.
      const { containerId } = await startRunning(env, run, shell('spinner', 'while :; do :; done'));
      await withTaskApi(run, async (task) => {
        const cpuUsec = async () => fromBinary(V2MetricsSchema, (await task.stats({ id: containerId })).stats!.value).cpu?.usageUsec ?? 0n;
        await pollUntil('CPU time of the loop', cpuUsec, (usec) => usec > 0n);

        await task.pause({ id: containerId });
        assert.equal((await task.state({ id: containerId })).status, Status.PAUSED);
        const frozen = await cpuUsec();
        await new Promise((resolve) => setTimeout(resolve, 1000));
        assert.equal(await cpuUsec(), frozen, 'no CPU time while frozen');

        await task.resume({ id: containerId });
        assert.equal((await task.state({ id: containerId })).status, Status.RUNNING);
        await pollUntil('CPU time after the resume', cpuUsec, (usec) => usec > frozen);
        // Left paused: removing the pod must still end it.
        await task.pause({ id: containerId });
      });
    });
  });

  it('StopContainer sends SIGTERM and waits its timeout before SIGKILL', async () => {
    await withPod('vmm-stop-timeout', async (run) => {
      const stubborn = await startRunning(env, run, shell('stubborn', 'trap "echo got TERM" TERM; echo up; while :; do sleep 0.1; done'));
      const polite = await startRunning(env, run, shell('polite', 'trap "echo bye; exit 0" TERM; while :; do sleep 0.1; done'));

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
});
