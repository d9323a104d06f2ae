// The vmm kind end to end, under TCG: an unmodified containerd 2.x, driven through CRI as kubelet
// drives it, runs pods on kuasard's `kuasar-vmm` handler, each pod a QEMU VM with its own guest
// kernel and kuasar's agent as PID 1. The tests check what a user sees (containers in the guest's
// kernel, their logs and exit codes, volumes shared with the host and between containers), that a
// VM that dies is reported through CRI, and that removing a pod leaves nothing: no QEMU, mount,
// socket or file.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import {
  LinuxContainerConfigSchema,
  MountSchema,
  NamespaceMode,
  PodSandboxState,
  type ContainerConfig,
} from '../../src/api/cri/runtime/v1/api_pb.js';
import { ContainerState } from '../../src/cri/client.js';
import { renderKuasardConfigWith } from '../../src/devenv/config.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { diffHost, NO_LEAKS, snapshotHost } from '../../src/devenv/leaks.js';
import { vmProcesses } from '../../src/devenv/vm-processes.js';
import { runPod, runToExit, startRunning, type PodRun } from '../../src/devenv/pod-runs.js';
import { containerConfig } from '../../src/devenv/pods.js';
import { eventually, untilAnswered } from '../../src/devenv/retry.js';
import { DEFAULT_IMAGE_DIR, readManifest } from '../../src/guest/image/layout.js';

/** Under TCG a VM boots in seconds; CRI waits are generous. */
const WAIT = { timeoutMs: 60_000 };

describe('vmm kind through CRI', () => {
  let env: Environment;
  let volumes: string;

  before(async () => {
    env = await startEnvironment({ streamingHandlers: true });
    volumes = mkdtempSync(join(env.paths.dir, 'vmm-volumes-'));
  });

  after(async () => {
    await env?.stop();
  });

  const handler = () => env.handlers.kuasar['vmm'] ?? '';

  const qemuProcesses = (sandboxId?: string) => vmProcesses(env.scope, sandboxId);

  /** Runs a pod on kuasar-vmm (or `podHandler`), calls `body`, removes the pod and checks that nothing stayed. */
  async function withPod(name: string, body: (run: PodRun) => Promise<void>, podHandler = handler()) {
    const { leaks } = await runPod(env, podHandler, env.podConfig({ name }), [env.paths.kuasarState], body);
    assert.deepEqual(leaks, NO_LEAKS);
    assert.deepEqual(
      qemuProcesses().map((p) => p.cmdline),
      [],
      'no QEMU process is left',
    );
  }

  const shell = (name: string, script: string): ContainerConfig =>
    containerConfig({ name, image: env.images.busybox, command: ['sh', '-c', script] });

  const withMounts = (config: ContainerConfig, mounts: { containerPath: string; hostPath: string; readonly?: boolean }[]) => {
    config.mounts = mounts.map((m) => create(MountSchema, m));
    return config;
  };

  it("runs two containers in the pod's own guest kernel; their output is in the CRI logs, their exit codes are theirs, an emptyDir and host volumes are shared", async () => {
    const hostBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const manifest = await readManifest(DEFAULT_IMAGE_DIR);
    const data = join(volumes, 'data');
    const config = join(volumes, 'config');
    mkdirSync(data);
    chmodSync(data, 0o777);
    mkdirSync(config);
    writeFileSync(join(config, 'settings'), 'x=1\n');
    await withPod('two-containers', async (run) => {
      // kubelet's emptyDir: a directory of the pod's on the node, which the VM replaces with its own tmpfs.
      const emptyDir = join(volumes, 'pods', run.pod.metadata?.uid ?? '', 'volumes', 'kubernetes.io~empty-dir', 'cache');
      mkdirSync(emptyDir, { recursive: true });
      const facts = 'echo kernel $(uname -r); echo boot $(cat /proc/sys/kernel/random/boot_id)';
      const reader = await startRunning(
        env,
        run,
        withMounts(shell('reader', `${facts}; while [ ! -f /cache/msg ]; do sleep 0.1; done; cat /cache/msg; echo to-stderr >&2; exit 3`), [
          { containerPath: '/cache', hostPath: emptyDir },
        ]),
      );
      const writer = await runToExit(
        env,
        run,
        withMounts(
          shell(
            'writer',
            `${facts}; echo from-writer > /cache/msg.tmp && mv /cache/msg.tmp /cache/msg; echo hi > /data/out; cat /config/settings; ` +
              'if echo no > /config/settings 2>/dev/null; then echo config-writable; else echo config-readonly; fi',
          ),
          [
            { containerPath: '/cache', hostPath: emptyDir },
            { containerPath: '/data', hostPath: data },
            { containerPath: '/config', hostPath: config, readonly: true },
          ],
        ),
        WAIT.timeoutMs,
      );
      assert.equal(writer.status.exitCode, 0, writer.stderr);
      const status = await env.cri.waitForContainerState(reader.containerId, ContainerState.CONTAINER_EXITED, WAIT);
      assert.equal(status.exitCode, 3, 'the exit code from the guest is the container’s own');

      const readerLog = readFileSync(join(run.pod.logDirectory, 'reader.log'), 'utf8');
      assert.match(readerLog, / stdout F from-writer$/m, 'the reader saw what the writer wrote in the emptyDir');
      assert.match(readerLog, / stderr F to-stderr$/m, 'stderr reaches the CRI log');
      const kernels = [readerLog, writer.stdout].map((out) => /kernel (\S+)$/m.exec(out)?.[1]);
      const boots = [readerLog, writer.stdout].map((out) => /boot (\S+)$/m.exec(out)?.[1]);
      assert.equal(kernels[0], manifest.kernelRelease, "the containers run on the guest image's kernel");
      assert.equal(kernels[1], kernels[0], 'both containers run on the same kernel');
      assert.notEqual(kernels[0], release(), "the guest's kernel is not the host's");
      assert.ok(boots[0] && boots[0] === boots[1], `both containers see one boot id (${boots.join(', ')})`);
      assert.notEqual(boots[0], hostBootId, "the guest's boot id is not the host's");

      assert.match(writer.stdout, /^x=1$/m, 'a read-only host volume is readable in the guest');
      assert.match(writer.stdout, /^config-readonly$/m, 'a read-only host volume stays read-only in the guest');
      assert.equal(readFileSync(join(config, 'settings'), 'utf8'), 'x=1\n');
      assert.equal(readFileSync(join(data, 'out'), 'utf8'), 'hi\n', "the guest's write reached the host volume");
    });
    assert.equal(readFileSync(join(data, 'out'), 'utf8'), 'hi\n', 'the host volume keeps its data after the pod');
  });

  it("serves the pod's network: its IP answers from the host, and its containers reach each other on localhost", async () => {
    await withPod('vmm-network', async (run) => {
      const page = 'hello from a VM pod';
      await startRunning(env, run, shell('server', `mkdir /www; echo '${page}' > /www/index.html; exec httpd -f -p 8080 -h /www`));
      const client = await runToExit(
        env,
        run,
        shell('client', 'until wget -q -O - http://127.0.0.1:8080/; do sleep 0.2; done'),
        WAIT.timeoutMs,
      );
      assert.equal(client.status.exitCode, 0, client.stderr);
      assert.equal(client.stdout, `${page}\n`, "the client reached the server on the guest's 127.0.0.1");
      const ip = (await env.cri.runtime.podSandboxStatus({ podSandboxId: run.podId })).status?.network?.ip ?? '';
      assert.match(ip, /^\d+\.\d+\.\d+\.\d+$/, 'CRI reports the pod IP');
      const response = await fetch(`http://${ip}:8080/`);
      assert.equal(response.status, 200);
      assert.equal(await response.text(), `${page}\n`, "the host reaches the server in the VM at the pod's IP");
    });
  });

  it('runs ExecSync in the guest: stdout, stderr and exit code; a missing program fails at once and the container runs on', async () => {
    await withPod('vmm-exec', async (run) => {
      const { containerId } = await startRunning(
        env,
        run,
        containerConfig({ name: 'idle', image: env.images.busybox, command: ['sleep', '3600'] }),
      );
      const result = await env.cri.runtime.execSync({
        containerId,
        cmd: ['sh', '-c', 'echo out; echo err >&2; uname -r; exit 7'],
        timeout: 30n,
      });
      assert.equal(result.exitCode, 7);
      assert.equal(Buffer.from(result.stderr).toString(), 'err\n');
      const [out, kernel] = Buffer.from(result.stdout).toString().trimEnd().split('\n');
      assert.equal(out, 'out');
      assert.notEqual(kernel, release(), "the exec runs on the guest's kernel");
      const sees = await env.cri.runtime.execSync({ containerId, cmd: ['ps', '-o', 'comm'], timeout: 30n });
      assert.match(Buffer.from(sees.stdout).toString(), /^sleep$/m, "the exec is in the container's PID namespace");
      await assert.rejects(
        env.cri.runtime.execSync({ containerId, cmd: ['/no/such/program'], timeout: 30n }),
        /no such file|not found|exec failed/i,
      );
      const { status } = await env.cri.runtime.containerStatus({ containerId });
      assert.equal(status?.state, ContainerState.CONTAINER_RUNNING);
    });
  });

  it('carries a large output over streaming io (kuasar-vmm-streaming) as well as FIFOs, in order and whole', async () => {
    const lines = 100_000;
    for (const podHandler of [handler(), env.handlers.kuasarStreaming['vmm'] ?? '']) {
      await withPod(
        `vmm-output-${podHandler.endsWith('streaming') ? 'streaming' : 'fifo'}`,
        async (run) => {
          const { status, stdout, stderr } = await runToExit(env, run, shell('counter', `seq 1 ${lines}; echo done >&2`), WAIT.timeoutMs);
          assert.equal(status.exitCode, 0);
          const numbers = stdout.trimEnd().split('\n');
          assert.equal(numbers.length, lines, `${podHandler}: every line arrived`);
          assert.ok(
            numbers.every((line, i) => line === String(i + 1)),
            `${podHandler}: in order`,
          );
          assert.equal(stderr, 'done\n');
        },
        podHandler,
      );
    }
  });

  it("shares one PID namespace between a pod's containers when the pod asks, held in the guest by kuasar-idle", async () => {
    const pod = env.podConfig({ name: 'shared-pid' });
    pod.linux!.securityContext!.namespaceOptions!.pid = NamespaceMode.POD;
    const { leaks } = await runPod(env, handler(), pod, [env.paths.kuasarState], async (run) => {
      await startRunning(env, run, containerConfig({ name: 'sleeper', image: env.images.busybox, command: ['sleep', '3600'] }));
      const looker = await runToExit(env, run, shell('looker', 'cat /proc/1/comm; ps -o comm | sort -u'), WAIT.timeoutMs);
      assert.equal(looker.status.exitCode, 0, looker.stderr);
      assert.match(looker.stdout, /^kuasar-idle$/m, "PID 1 of the pod's namespace is the holder");
      assert.match(looker.stdout, /^sleep$/m, "the other container's process is seen");
    });
    assert.deepEqual(leaks, NO_LEAKS);
  });

  it('reports the pod not ready and its containers exited when its QEMU process is killed', async () => {
    await withPod('vm-killed', async (run) => {
      const { containerId } = await startRunning(
        env,
        run,
        containerConfig({ name: 'idle', image: env.images.busybox, command: ['sleep', '3600'] }),
      );
      const [qemu, ...others] = qemuProcesses(run.podId);
      assert.ok(qemu, 'the pod has a QEMU process');
      assert.deepEqual(others, [], 'and only one');
      process.kill(qemu.pid, 'SIGKILL');
      const container = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
      assert.notEqual(container.exitCode, 0);
      await untilAnswered(async () => {
        const { status } = await env.cri.runtime.podSandboxStatus({ podSandboxId: run.podId });
        assert.equal(status?.state, PodSandboxState.SANDBOX_NOTREADY);
      }, WAIT.timeoutMs);
    });
  });
});

/** A kuasard whose vmm table has `overrides`, beside the devenv's defaults. */
const vmmConfigWith = (overrides: Record<string, unknown>) => renderKuasardConfigWith({ vmm: overrides });

describe('vmm kind errors through CRI', () => {
  it('stops and reports a VM whose agent does not answer in time', async () => {
    // The agent looks for a serial port that does not exist: the VM runs, and nobody answers.
    const env = await startEnvironment({
      kuasardConfig: vmmConfigWith({ boot_timeout_ms: 4_000, kernel_params: ['kuasar.agent_port=nowhere'] }),
    });
    try {
      const pod = env.podConfig({ name: 'silent-agent' });
      const before = snapshotHost({ dirs: [env.paths.kuasarState] });
      await assert.rejects(
        env.cri.runtime.runPodSandbox({ config: pod, runtimeHandler: env.handlers.kuasar['vmm'] ?? '' }),
        /the VM's agent did not answer within 4000 ms/,
      );
      assert.deepEqual(diffHost(before, snapshotHost({ dirs: [env.paths.kuasarState] }), { scope: env.scope }), NO_LEAKS);
    } finally {
      await env.stop();
    }
  });
});

describe('vmm guest clock', () => {
  it("sets a guest clock that went wrong back to the host's within the sync interval", async () => {
    const env = await startEnvironment({ kuasardConfig: vmmConfigWith({ clock_sync_interval_s: 2 }) });
    try {
      const pod = env.podConfig({ name: 'clock' });
      const { leaks } = await runPod(env, env.handlers.kuasar['vmm'] ?? '', pod, [env.paths.kuasarState], async (run) => {
        // The guest's clock is the VM's own: a container allowed to set it moves it for the whole guest.
        const config = containerConfig({
          name: 'time-traveller',
          image: env.images.busybox,
          // Only whether `date -s` succeeded is printed: a date read after it may already be the
          // host's again (the sync runs every 2 s, and under emulation a shell's next step can
          // take that long).
          command: ['sh', '-c', 'date -s @1000000000 >/dev/null && echo clock-set; sleep 3600'],
        });
        config.linux = create(LinuxContainerConfigSchema, { securityContext: { capabilities: { addCapabilities: ['SYS_TIME'] } } });
        const { containerId } = await startRunning(env, run, config);
        const log = join(run.pod.logDirectory, 'time-traveller.log');
        await eventually(async () => {
          assert.match(readFileSync(log, 'utf8'), /stdout F clock-set$/m, 'the container set the guest clock to 2001');
        }, WAIT.timeoutMs);
        await eventually(async () => {
          const { stdout } = await env.cri.runtime.execSync({ containerId, cmd: ['date', '+%s'], timeout: 30n });
          const guestSeconds = Number(Buffer.from(stdout).toString().trim());
          assert.ok(Math.abs(guestSeconds - Date.now() / 1000) < 30, `the guest's clock (${guestSeconds}) is the host's again`);
        }, WAIT.timeoutMs);
      });
      assert.deepEqual(leaks, NO_LEAKS);
    } finally {
      await env.stop();
    }
  });
});
