// The runc kind end to end: an unmodified containerd 2.x, driven through CRI exactly as kubelet
// drives it, runs pods on kuasard's `kuasar-runc` handler. Every test checks what a user can
// observe (logs, exit codes, namespaces, processes) and that removing a pod leaves nothing.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { create, toBinary } from '@bufbuild/protobuf';
import { Task } from '../../src/api/containerd/runtime/task/v3/shim_pb.js';
import { Controller } from '../../src/api/containerd/services/sandbox/v1/sandbox_pb.js';
import { NamespaceMode, PodSandboxConfigSchema, PodSandboxState, type PodSandboxConfig } from '../../src/api/cri/runtime/v1/api_pb.js';
import { StateRequestSchema } from '../../src/api/containerd/runtime/task/v3/shim_pb.js';
import { Status } from '../../src/api/containerd/types/task/task_pb.js';
import { Code, RuntimeError } from '../../src/base/errors.js';
import { ContainerState } from '../../src/cri/client.js';
import { criLogText, readContainerLog } from '../../src/cri/log.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { diffHost, NO_LEAKS, processesOfPod, snapshotHost } from '../../src/devenv/leaks.js';
import { runPod } from '../../src/devenv/pod-runs.js';
import { containerConfig, containerLogPath, type ContainerOptions } from '../../src/devenv/pods.js';
import { createGrpcClient } from '../../src/rpc/grpc.js';
import { TtrpcClient } from '../../src/rpc/ttrpc/client.js';
import { typedClient } from '../../src/rpc/ttrpc/typed.js';

const WAIT = { timeoutMs: 30_000 };

const hasCode = (code: Code) => (err: unknown) => err instanceof RuntimeError && err.code === code;

describe('runc kind through CRI', () => {
  let env: Environment;
  let sandboxDirOf: (podId: string) => string;

  before(async () => {
    env = await startEnvironment();
    sandboxDirOf = (podId) => join(env.paths.kuasarState, 'runc', podId);
  });

  after(async () => {
    await env?.stop();
  });

  /** Runs a pod on kuasar-runc, calls `body`, then removes the pod and checks nothing stayed. */
  async function withPod(name: string, hostNetwork: boolean, body: (podId: string, pod: PodSandboxConfig) => Promise<void>) {
    const watched = [env.paths.kuasarState, `${env.paths.kuasarState}/runc.oci`];
    let podId = '';
    const pod = env.podConfig({ name, hostNetwork });
    const { leaks } = await runPod(env, env.handlers.kuasar['runc'] ?? '', pod, watched, (run) => {
      podId = run.podId;
      return body(podId, run.pod);
    });
    assert.equal(existsSync(sandboxDirOf(podId)), false, 'the sandbox state directory is removed');
    assert.deepEqual(leaks, NO_LEAKS);
  }

  async function runToExit(podId: string, pod: PodSandboxConfig, options: ContainerOptions) {
    const config = containerConfig(options);
    const { containerId } = await env.cri.runtime.createContainer({ podSandboxId: podId, config, sandboxConfig: pod });
    await env.cri.runtime.startContainer({ containerId });
    const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
    const log = await readContainerLog(containerLogPath(pod, config));
    return { containerId, status, stdout: criLogText(log, 'stdout'), stderr: criLogText(log, 'stderr') };
  }

  async function startLongRunning(podId: string, pod: PodSandboxConfig, name: string) {
    const config = containerConfig({ name, image: env.images.busybox, command: ['sleep', '3600'] });
    const { containerId } = await env.cri.runtime.createContainer({ podSandboxId: podId, config, sandboxConfig: pod });
    await env.cri.runtime.startContainer({ containerId });
    const status = await env.cri.runtime.containerStatus({ containerId, verbose: true });
    assert.equal(status.status?.state, ContainerState.CONTAINER_RUNNING);
    const pid = (JSON.parse(status.info['info'] ?? '{}') as { pid?: number }).pid;
    assert.ok(pid && pid > 0, 'the verbose container status names the container pid');
    return { containerId, pid };
  }

  it("runs a host-network pod: output in the CRI log, the node's hostname and interfaces", async () => {
    await withPod('host-net', true, async (podId, pod) => {
      const { status, stdout, stderr } = await runToExit(podId, pod, {
        name: 'hello',
        image: env.images.busybox,
        command: ['sh', '-c', 'echo hello from $(hostname); ip -4 -o addr show; echo to-stderr >&2'],
      });
      assert.equal(status.exitCode, 0);
      assert.match(stdout, new RegExp(`^hello from ${hostname()}$`, 'm'));
      assert.match(
        stdout,
        new RegExp(` ${env.names.bridge}\\s+inet ${env.subnet.gateway.replace(/\./g, '\\.')}/`),
        "the host's bridge is visible",
      );
      assert.equal(stderr.trim(), 'to-stderr');
    });
  });

  it("runs a pod on the CNI bridge network: the container has the pod's CNI address", async () => {
    await withPod('bridge-net', false, async (podId, pod) => {
      const podIp = (await env.cri.runtime.podSandboxStatus({ podSandboxId: podId })).status?.network?.ip ?? '';
      assert.match(podIp, /^\d+\.\d+\.\d+\.\d+$/, 'CRI reports the pod IP');
      const { status, stdout } = await runToExit(podId, pod, {
        name: 'addr',
        image: env.images.busybox,
        command: ['sh', '-c', 'echo name=$(hostname); ip -4 -o addr show; cat /etc/hosts'],
      });
      assert.equal(status.exitCode, 0);
      assert.match(stdout, /^name=bridge-net$/m);
      assert.match(stdout, new RegExp(`eth0\\s+inet ${podIp.replace(/\./g, '\\.')}/24`));
      assert.doesNotMatch(stdout, new RegExp(` ${env.names.bridge}\\s`), 'host interfaces are not visible');
      assert.match(stdout, /^127\.0\.0\.1\s+localhost$/m, "the pod's /etc/hosts is mounted");
    });
  });

  it("shares the pod's IPC and UTS namespaces between containers, with no other process for the pod", async () => {
    await withPod('shared', false, async (podId, pod) => {
      const a = await startLongRunning(podId, pod, 'a');
      const b = await startLongRunning(podId, pod, 'b');
      const nsDir = join(sandboxDirOf(podId), 'ns');
      for (const kind of ['ipc', 'uts']) {
        const pinned = statSync(join(nsDir, kind)).ino;
        assert.equal(statSync(`/proc/${a.pid}/ns/${kind}`).ino, pinned, `container a is in the pod's ${kind} namespace`);
        assert.equal(statSync(`/proc/${b.pid}/ns/${kind}`).ino, pinned, `container b is in the pod's ${kind} namespace`);
        assert.notEqual(pinned, statSync(`/proc/self/ns/${kind}`).ino, `the pod's ${kind} namespace is not the host's`);
      }
      const podProcesses = processesOfPod({ namespacePaths: [join(nsDir, 'ipc'), join(nsDir, 'uts')] });
      assert.deepEqual(podProcesses.map((p) => p.pid).sort(), [a.pid, b.pid].sort(), 'only the two containers live in the pod');

      const { stdout } = await runToExit(podId, pod, { name: 'uts', image: env.images.busybox, command: ['hostname'] });
      assert.equal(stdout.trim(), 'shared');
    });
  });

  it('reports a container that exits 3 as EXITED with exit code 3', async () => {
    await withPod('exit-code', false, async (podId, pod) => {
      const { status } = await runToExit(podId, pod, { name: 'three', image: env.images.busybox, command: ['sh', '-c', 'exit 3'] });
      assert.equal(status.state, ContainerState.CONTAINER_EXITED);
      assert.equal(status.exitCode, 3);
    });
  });

  it('stops a running container through CRI (SIGTERM then SIGKILL) and reports its signal', async () => {
    await withPod('stop', false, async (podId, pod) => {
      const { containerId } = await startLongRunning(podId, pod, 'sleeper');
      await env.cri.runtime.stopContainer({ containerId, timeout: 1n });
      const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
      // busybox sleep dies of SIGTERM as pid 1 only if it handles it; either way it is gone.
      assert.ok([137, 143].includes(status.exitCode), `exit code ${status.exitCode} is a signal death`);
    });
  });

  it('reports a pod whose isolation ended (its PID namespace holder was killed) NOTREADY, and its containers exited', async () => {
    const pod = env.podConfig({ name: 'holder-killed', hostNetwork: false });
    pod.linux!.securityContext!.namespaceOptions!.pid = NamespaceMode.POD;
    const watched = [env.paths.kuasarState, `${env.paths.kuasarState}/runc.oci`];
    const { leaks } = await runPod(env, env.handlers.kuasar['runc'] ?? '', pod, watched, async ({ podId, pod }) => {
      const { containerId } = await startLongRunning(podId, pod, 'sleeper');
      const ready = await env.cri.runtime.podSandboxStatus({ podSandboxId: podId });
      assert.equal(ready.status?.state, PodSandboxState.SANDBOX_READY);
      // The holder is the process that stands for the pod (the sandbox's pid).
      const { pid } = JSON.parse(readFileSync(join(sandboxDirOf(podId), 'state.json'), 'utf8')) as { pid: number };
      assert.ok(pid > 0, 'the pod has a PID namespace holder');
      process.kill(pid, 'SIGKILL');
      // The container died with its PID namespace; containerd learns that the sandbox ended from Controller Wait.
      const exited = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
      assert.equal(exited.exitCode, 137);
      const deadline = Date.now() + WAIT.timeoutMs;
      let state: PodSandboxState | undefined = ready.status?.state;
      while (state !== PodSandboxState.SANDBOX_NOTREADY && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        state = (await env.cri.runtime.podSandboxStatus({ podSandboxId: podId })).status?.state;
      }
      assert.equal(state, PodSandboxState.SANDBOX_NOTREADY);
      assert.match(env.logs(200).kuasard, /the holder of the pod's PID namespace \(pid \d+\) exited/);
    });
    assert.deepEqual(leaks, NO_LEAKS);
  });

  it('undoes a Start that fails after Create pinned the namespaces and mounted /dev/shm: nothing of the sandbox stays', async () => {
    const controller = createGrpcClient(Controller, `unix://${env.kuasarSockets['runc']}`, {
      metadata: { 'containerd-namespace': 'k8s.io' },
      timeoutMs: 10_000,
    });
    const before = snapshotHost({ dirs: [env.paths.kuasarState] });
    try {
      const pod = env.podConfig({ name: 'start-fails', hostNetwork: false });
      pod.linux!.securityContext!.namespaceOptions!.pid = NamespaceMode.POD;
      const options = { typeUrl: 'runtime.v1.PodSandboxConfig', value: toBinary(PodSandboxConfigSchema, pod) };
      // The PID namespace holder is to join a network namespace that does not exist: Start's last kind step fails.
      await controller.create({ sandboxId: 'start-fails', options, netnsPath: join(env.paths.dir, 'no-such-netns') });
      assert.equal(existsSync(join(sandboxDirOf('start-fails'), 'ns', 'ipc')), true, 'Create pinned the namespaces');
      await assert.rejects(controller.start({ sandboxId: 'start-fails' }));
      // containerd sends no Shutdown after a failed Start: the sandbox is gone already.
      await assert.rejects(controller.status({ sandboxId: 'start-fails' }), hasCode(Code.NotFound));
      assert.equal(existsSync(sandboxDirOf('start-fails')), false);
      assert.deepEqual(diffHost(before, snapshotHost({ dirs: [env.paths.kuasarState] }), { scope: env.scope }), NO_LEAKS);
    } finally {
      controller.close();
    }
  });

  it('answers unknown ids with NotFound and malformed requests with InvalidArgument, and keeps serving', async () => {
    const controller = createGrpcClient(Controller, `unix://${env.kuasarSockets['runc']}`, {
      metadata: { 'containerd-namespace': 'k8s.io' },
      timeoutMs: 10_000,
    });
    try {
      await assert.rejects(controller.status({ sandboxId: 'no-such-sandbox' }), hasCode(Code.NotFound));
      await assert.rejects(controller.stop({ sandboxId: 'no-such-sandbox' }), hasCode(Code.NotFound));
      await assert.rejects(controller.wait({ sandboxId: 'no-such-sandbox' }), hasCode(Code.NotFound));
      await assert.rejects(controller.status({ sandboxId: '../../etc' }), hasCode(Code.InvalidArgument));
      await assert.rejects(controller.create({ sandboxId: 'no-options' }), hasCode(Code.InvalidArgument));
      await assert.rejects(
        controller.create({
          sandboxId: 'bad-options',
          options: { typeUrl: 'runtime.v1.PodSandboxConfig', value: new Uint8Array([0xff, 0xff]) },
        }),
        hasCode(Code.InvalidArgument),
      );
      assert.equal(existsSync(sandboxDirOf('no-options')), false, 'a refused create leaves no state');
      assert.equal(existsSync(sandboxDirOf('bad-options')), false, 'a refused create leaves no state');
    } finally {
      controller.close();
    }

    await withPod('errors', false, async (podId, pod) => {
      const client = await TtrpcClient.connect(join(sandboxDirOf(podId), 'task.sock'));
      try {
        const task = typedClient(client, Task);
        await assert.rejects(task.state({ id: 'no-such-container' }), hasCode(Code.NotFound));
        await assert.rejects(task.kill({ id: 'no-such-container', signal: 9 }), hasCode(Code.NotFound));
        await assert.rejects(task.delete({ id: 'no-such-container' }), hasCode(Code.NotFound));
        await assert.rejects(task.create({ id: '../escape', bundle: '/tmp' }), hasCode(Code.InvalidArgument));
        await assert.rejects(task.create({ id: 'relative-bundle', bundle: 'tmp' }), hasCode(Code.InvalidArgument));
        // Bytes that are not a StateRequest at all.
        await assert.rejects(
          client.call('containerd.task.v3.Task', 'State', new Uint8Array([0x0a, 0xff, 0xff, 0xff])),
          hasCode(Code.InvalidArgument),
        );
        await assert.rejects(
          client.call('containerd.task.v3.Task', 'NoSuchMethod', toBinary(StateRequestSchema, create(StateRequestSchema, { id: 'x' }))),
          hasCode(Code.Unimplemented),
        );
        // The same connection and the daemon still serve real work.
        const { status, stdout } = await runToExit(podId, pod, {
          name: 'after',
          image: env.images.busybox,
          command: ['echo', 'still serving'],
        });
        assert.equal(status.exitCode, 0);
        assert.equal(stdout.trim(), 'still serving');
        const running = await startLongRunning(podId, pod, 'running');
        const state = await task.state({ id: running.containerId });
        assert.equal(state.status, Status.RUNNING);
        assert.equal(state.pid, running.pid);
      } finally {
        client.close();
      }
    });
  });

  it('keeps the runc root free of containers of removed pods', () => {
    const root = `${env.paths.kuasarState}/runc.oci`;
    const left = existsSync(root) ? readdirSync(root) : [];
    assert.deepEqual(left, []);
  });
});
