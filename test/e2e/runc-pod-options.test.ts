// Pod and container options of the runc kind, end to end through CRI on an unmodified
// containerd 2.x: a PID namespace shared by the pod (and its holder process), pod sysctls, and
// the container options kubelet passes on (read-only root, run-as user and group, environment,
// working directory, bind mounts read-write and read-only, a directory shared like an emptyDir).
// CRI writes most of these into the OCI spec itself; the tests prove they survive the runc
// kind's rewriting of that spec. Every pod is removed and must leave nothing behind.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { Controller } from '../../src/api/containerd/services/sandbox/v1/sandbox_pb.js';
import { LinuxContainerConfigSchema, MountSchema, NamespaceMode, type PodSandboxConfig } from '../../src/api/cri/runtime/v1/api_pb.js';
import { ContainerState } from '../../src/cri/client.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { diffHost, NO_LEAKS, snapshotHost } from '../../src/devenv/leaks.js';
import { runPod, runToExit, startRunning, type PodRun, type RunPodOptions } from '../../src/devenv/pod-runs.js';
import { containerConfig } from '../../src/devenv/pods.js';
import { untilAnswered } from '../../src/devenv/retry.js';
import { readProcStat } from '../../src/linux/proc.js';
import { createGrpcClient } from '../../src/rpc/grpc.js';

const nsInode = (pid: number | 'self', kind: string) => statSync(`/proc/${pid}/ns/${kind}`).ino;

describe('runc kind: pod and container options through CRI', () => {
  let env: Environment;
  let controller: ReturnType<typeof createGrpcClient<typeof Controller>>;

  before(async () => {
    env = await startEnvironment();
    controller = createGrpcClient(Controller, `unix://${env.kuasarSockets['runc']}`, {
      metadata: { 'containerd-namespace': 'k8s.io' },
      timeoutMs: 10_000,
    });
  });

  after(async () => {
    controller?.close();
    await env?.stop();
  });

  const watched = () => [env.paths.kuasarState, `${env.paths.kuasarState}/runc.oci`];

  async function withPod(pod: PodSandboxConfig, body: (run: PodRun) => Promise<void>, options: RunPodOptions = {}) {
    const { leaks } = await runPod(env, env.handlers.kuasar['runc']!, pod, watched(), body, options);
    assert.deepEqual(leaks, NO_LEAKS, 'the pod left nothing behind');
  }

  it("shares one PID namespace between the pod's containers, held by one process that reaps orphans", async () => {
    const pod = env.podConfig({ name: 'shared-pid' });
    pod.linux!.securityContext!.namespaceOptions!.pid = NamespaceMode.POD;
    let holderPid = 0;
    let holderStart = '';
    await withPod(pod, async (run) => {
      holderPid = (await controller.status({ sandboxId: run.podId })).pid;
      assert.ok(holderPid > 0, 'the controller reports the holder as the sandbox pid');
      const holder = readProcStat(holderPid);
      assert.equal(holder?.comm, 'catatonit');
      holderStart = holder!.startTime;
      const memoryCgroup = readFileSync(`/proc/${holderPid}/cgroup`, 'utf8')
        .split('\n')
        .find((line) => /:memory:/.test(line) || line.startsWith('0::'));
      assert.ok(
        memoryCgroup?.includes(`${env.cgroupParent}/kuasar-pidns-${run.podId}`),
        `the holder lives below the pod's cgroup: ${memoryCgroup}`,
      );

      const a = await startRunning(env, run, containerConfig({ name: 'a', image: env.images.busybox, command: ['sleep', '3601'] }));
      const b = await startRunning(env, run, containerConfig({ name: 'b', image: env.images.busybox, command: ['sleep', '3602'] }));
      assert.notEqual(nsInode(holderPid, 'pid'), nsInode('self', 'pid'), "the pod's PID namespace is not the host's");
      for (const c of [a, b])
        assert.equal(nsInode(c.pid, 'pid'), nsInode(holderPid, 'pid'), "the container is in the holder's PID namespace");
      // containerd takes /proc/<sandbox pid>/ns/* for the pod's namespaces: all of them must be the pod's.
      for (const kind of ['net', 'ipc', 'uts'])
        assert.equal(nsInode(holderPid, kind), nsInode(a.pid, kind), `the holder is in the pod's ${kind} namespace`);

      // A third container sees the others and the holder as PID 1; the orphan it leaves behind
      // (re-parented to PID 1) is reaped, so no zombie remains.
      const { status, stdout } = await runToExit(
        env,
        run,
        containerConfig({
          name: 'looker',
          image: env.images.busybox,
          command: ['sh', '-c', '(sleep 0.3 &); sleep 1; for p in /proc/[0-9]*; do cat $p/stat 2>/dev/null; echo; done'],
        }),
      );
      assert.equal(status.exitCode, 0);
      const processes = stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const match = /^(\d+) \((.*)\) (\S) /.exec(line);
          assert.ok(match, `a stat line: ${line}`);
          return { pid: Number(match[1]), comm: match[2]!, state: match[3]! };
        });
      assert.deepEqual(processes.find((p) => p.pid === 1)?.comm, 'catatonit', 'PID 1 of the pod is the holder');
      assert.equal(
        processes.filter((p) => p.comm === 'sleep' && p.state !== 'Z').length >= 2,
        true,
        "the other containers' processes are visible",
      );
      assert.deepEqual(
        processes.filter((p) => p.state === 'Z'),
        [],
        'no zombie is left in the pod',
      );
    });
    const after = readProcStat(holderPid);
    assert.ok(after === undefined || after.startTime !== holderStart, 'the holder is gone with the pod');
  });

  it('keeps a shared PID namespace through a kuasard crash, and still ends its holder with the pod', async () => {
    const pod = env.podConfig({ name: 'shared-pid-crash' });
    pod.linux!.securityContext!.namespaceOptions!.pid = NamespaceMode.POD;
    let holderPid = 0;
    let holderStart = '';
    await withPod(
      pod,
      async (run) => {
        holderPid = (await controller.status({ sandboxId: run.podId })).pid;
        holderStart = readProcStat(holderPid)!.startTime;
        const before = await startRunning(
          env,
          run,
          containerConfig({ name: 'before', image: env.images.busybox, command: ['sleep', '3601'] }),
        );

        await env.restartKuasard({ crash: true });
        assert.equal(readProcStat(holderPid)?.startTime, holderStart, 'the holder outlived the daemon');
        assert.equal((await controller.status({ sandboxId: run.podId })).pid, holderPid, 'and is still the sandbox pid');
        // containerd's own controller connection comes back after its reconnect backoff.
        await untilAnswered(() => env.cri.runtime.podSandboxStatus({ podSandboxId: run.podId }));
        const after = await startRunning(
          env,
          run,
          containerConfig({ name: 'after', image: env.images.busybox, command: ['sleep', '3602'] }),
        );
        assert.equal(nsInode(after.pid, 'pid'), nsInode(before.pid, 'pid'), 'a new container joins the same PID namespace');
      },
      {
        // No longer the daemon's child after the crash: killed all the same, then reaped by init.
        settle: async () => {
          const deadline = Date.now() + 15_000;
          while (readProcStat(holderPid)?.startTime === holderStart) {
            assert.notEqual(readProcStat(holderPid)?.state, 'S', 'the holder was killed with the pod');
            assert.ok(Date.now() < deadline, 'init reaps the killed holder');
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        },
      },
    );
  });

  it("applies the pod's namespaced sysctls in every container, and not on the node", async () => {
    const sysctls = { 'net.core.somaxconn': '1234', 'kernel.shm_rmid_forced': '1', 'kernel.msgmax': '16384' };
    const files = Object.keys(sysctls).map((name) => `/proc/sys/${name.replace(/\./g, '/')}`);
    const hostBefore = files.map((file) => readFileSync(file, 'utf8'));
    const pod = env.podConfig({ name: 'sysctls' });
    pod.linux!.sysctls = sysctls;
    await withPod(pod, async (run) => {
      assert.equal(
        (await controller.status({ sandboxId: run.podId })).pid,
        0,
        'no process stands for a pod without a shared PID namespace',
      );
      for (const name of ['one', 'two']) {
        const { status, stdout } = await runToExit(
          env,
          run,
          containerConfig({ name, image: env.images.busybox, command: ['cat', ...files] }),
        );
        assert.equal(status.exitCode, 0);
        assert.equal(stdout, '1234\n1\n16384\n', `container ${name} sees the pod's values`);
      }
    });
    assert.deepEqual(
      files.map((file) => readFileSync(file, 'utf8')),
      hostBefore,
      "the node's values did not change",
    );
  });

  it('refuses a sysctl that is not namespaced, leaving nothing behind', async () => {
    const pod = env.podConfig({ name: 'bad-sysctl' });
    pod.linux!.sysctls = { 'vm.swappiness': '10' };
    const before = snapshotHost({ dirs: watched() });
    await assert.rejects(
      env.cri.runtime.runPodSandbox({ config: pod, runtimeHandler: env.handlers.kuasar['runc']! }),
      /vm\.swappiness is not namespaced/,
    );
    assert.deepEqual(diffHost(before, snapshotHost({ dirs: watched() }), { scope: env.scope }), NO_LEAKS);
  });

  it('runs a container read-only, as another user and group, with its env, working dir and bind mounts', async () => {
    const volumes = mkdtempSync(join(env.paths.dir, 'volumes-'));
    try {
      const data = mkdtempSync(join(volumes, 'data-'));
      chmodSync(data, 0o777);
      const config = mkdtempSync(join(volumes, 'config-'));
      writeFileSync(join(config, 'settings'), 'x=1\n');
      chmodSync(config, 0o777);

      await withPod(env.podConfig({ name: 'options' }), async (run) => {
        const container = containerConfig({
          name: 'secure',
          image: env.images.busybox,
          command: [
            'sh',
            '-c',
            [
              'id -u; id -g; echo "FOO=$FOO"; pwd',
              'if touch /probe 2>/dev/null; then echo root-writable; else echo root-readonly; fi',
              'echo hi > /data/out && echo data-written',
              'cat /config/settings',
              'if touch /config/probe 2>/dev/null; then echo config-writable; else echo config-readonly; fi',
            ].join('\n'),
          ],
          env: { FOO: 'bar baz' },
        });
        container.workingDir = '/data';
        container.mounts = [
          create(MountSchema, { containerPath: '/data', hostPath: data }),
          create(MountSchema, { containerPath: '/config', hostPath: config, readonly: true }),
        ];
        container.linux = create(LinuxContainerConfigSchema, {
          securityContext: { readonlyRootfs: true, runAsUser: { value: 1234n }, runAsGroup: { value: 5678n } },
        });
        const { status, stdout, stderr } = await runToExit(env, run, container);
        assert.equal(status.exitCode, 0, stderr);
        assert.equal(
          stdout,
          ['1234', '5678', 'FOO=bar baz', '/data', 'root-readonly', 'data-written', 'x=1', 'config-readonly', ''].join('\n'),
        );
        const written = statSync(join(data, 'out'));
        assert.equal(readFileSync(join(data, 'out'), 'utf8'), 'hi\n', 'the write reached the host directory');
        assert.deepEqual([written.uid, written.gid], [1234, 5678], 'written as the run-as user and group');
      });
    } finally {
      rmSync(volumes, { recursive: true, force: true });
    }
  });

  it('shares a host directory between two containers of the pod, as an emptyDir', async () => {
    const shared = mkdtempSync(join(env.paths.dir, 'empty-dir-'));
    try {
      chmodSync(shared, 0o777);
      await withPod(env.podConfig({ name: 'empty-dir' }), async (run) => {
        const mounted = (name: string, script: string) => {
          const config = containerConfig({ name, image: env.images.busybox, command: ['sh', '-c', script] });
          config.mounts = [create(MountSchema, { containerPath: '/cache', hostPath: shared })];
          return config;
        };
        const reader = await startRunning(env, run, mounted('reader', 'while [ ! -f /cache/msg ]; do sleep 0.1; done; cat /cache/msg'));
        const writer = await runToExit(env, run, mounted('writer', 'echo from-writer > /cache/msg.tmp && mv /cache/msg.tmp /cache/msg'));
        assert.equal(writer.status.exitCode, 0);
        const status = await env.cri.waitForContainerState(reader.containerId, ContainerState.CONTAINER_EXITED, { timeoutMs: 30_000 });
        assert.equal(status.exitCode, 0);
        const log = readFileSync(join(run.pod.logDirectory, 'reader.log'), 'utf8');
        assert.match(log, / stdout F from-writer$/m, 'the reader saw what the writer wrote');
      });
    } finally {
      rmSync(shared, { recursive: true, force: true });
    }
  });
});
