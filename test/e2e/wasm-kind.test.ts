// The wasm kind end to end: CRI runs WebAssembly modules on kuasard's `kuasar-wasm` handler,
// from an ordinary OCI image (kuasar.local/wasm-tests, built from test/fixtures/wasm/*.wat).
// Every test checks what a user observes (logs, exit codes, states, stats) and that removing
// the pod leaves nothing behind.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import {
  LinuxContainerConfigSchema,
  MountSchema,
  type ContainerConfig,
  type PodSandboxConfig,
} from '../../src/api/cri/runtime/v1/api_pb.js';
import { inPool } from '../../src/bench/pods.js';
import { ContainerState } from '../../src/cri/client.js';
import { criLogText, readContainerLog } from '../../src/cri/log.js';
import { RemoteCommand } from '../../src/cri/remote-command.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { NO_LEAKS } from '../../src/devenv/leaks.js';
import { runPod } from '../../src/devenv/pod-runs.js';
import { containerConfig, containerLogPath, type ContainerOptions } from '../../src/devenv/pods.js';
import { untilAnswered } from '../../src/devenv/retry.js';
import { descriptorsUnder } from '../../src/linux/descriptors.js';
import { mountsUnder } from '../../src/linux/mountinfo.js';

const WAIT = { timeoutMs: 30_000 };
/** Idle containers in the density test's pod: the figure the wasm kind is for (issue 17). */
const DENSE_CONTAINERS = 500;
const MiB = 1024n * 1024n;

describe('wasm kind through CRI', () => {
  let env: Environment;

  before(async () => {
    env = await startEnvironment({ streamingHandlers: true });
  });

  after(async () => {
    await env?.stop();
  });

  /** Runs a pod on kuasar-wasm, calls `body`, then removes the pod and checks nothing stayed. */
  async function withPod(
    name: string,
    body: (podId: string, pod: PodSandboxConfig) => Promise<void>,
    handler = env.handlers.kuasar['wasm'],
  ) {
    let podId = '';
    const { leaks } = await runPod(env, handler ?? '', env.podConfig({ name }), [env.paths.kuasarState], (run) => {
      podId = run.podId;
      return body(podId, run.pod);
    });
    assert.equal(existsSync(join(env.paths.kuasarState, 'wasm', podId)), false, 'the sandbox state directory is removed');
    assert.deepEqual(leaks, NO_LEAKS);
    // Instances run inside kuasard: what they opened (node:wasi never closes its preopens) must
    // be closed with them, or it would keep the pod's mounts alive out of the mount table's sight.
    const wasmState = join(env.paths.kuasarState, 'wasm');
    assert.deepEqual(
      env.scope.daemonPids.flatMap((pid) => descriptorsUnder(wasmState, pid)),
      [],
      'no daemon descriptor is left open in the pod',
    );
  }

  /** A container of the test image that runs `command` (args[0] is the module), with a memory limit if given. */
  function wasm(name: string, command: string[], extra: Partial<ContainerOptions> = {}, memoryLimitInBytes?: bigint): ContainerConfig {
    const config = containerConfig({ name, image: env.images.wasmTests, command, ...extra });
    if (memoryLimitInBytes !== undefined) config.linux = create(LinuxContainerConfigSchema, { resources: { memoryLimitInBytes } });
    return config;
  }

  async function start(podId: string, pod: PodSandboxConfig, config: ContainerConfig) {
    const { containerId } = await env.cri.runtime.createContainer({ podSandboxId: podId, config, sandboxConfig: pod });
    await env.cri.runtime.startContainer({ containerId });
    return { containerId, config };
  }

  async function runToExit(podId: string, pod: PodSandboxConfig, config: ContainerConfig) {
    const { containerId } = await start(podId, pod, config);
    const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
    const log = await readContainerLog(containerLogPath(pod, config));
    return { containerId, status, stdout: criLogText(log, 'stdout'), stderr: criLogText(log, 'stderr') };
  }

  it('runs a module with its args and env: output in the CRI log, exit code 0', async () => {
    await withPod('wasm-hello', async (podId, pod) => {
      const { status, stdout } = await runToExit(
        podId,
        pod,
        wasm('hello', ['/hello.wasm'], { args: ['one', 'two'], env: { GREETING: 'from-cri' } }),
      );
      assert.equal(status.exitCode, 0);
      assert.equal(stdout, 'hello\none\ntwo\nGREETING=from-cri\n');
    });
  });

  it('carries output over streaming io (kuasar-wasm-streaming) as well as FIFOs', async () => {
    await withPod(
      'wasm-streaming',
      async (podId, pod) => {
        const { status, stdout, stderr } = await runToExit(podId, pod, wasm('hello', ['/hello.wasm'], { args: ['streamed'] }));
        assert.equal(status.exitCode, 0);
        assert.equal(stdout, 'hello\nstreamed\n');
        const trap = await runToExit(podId, pod, wasm('trap', ['/trap.wasm']));
        assert.match(trap.stderr, /^wasm trap: unreachable$/m);
        assert.equal(stderr, '');
      },
      env.handlers.kuasarStreaming['wasm'],
    );
  });

  it('reports proc_exit(7) as exit code 7, and a trap as 134 with the trap in the log', async () => {
    await withPod('wasm-exits', async (podId, pod) => {
      const seven = await runToExit(podId, pod, wasm('seven', ['/exit-code.wasm']));
      assert.equal(seven.status.exitCode, 7);
      const trap = await runToExit(podId, pod, wasm('trap', ['/trap.wasm']));
      assert.equal(trap.status.exitCode, 134);
      assert.match(trap.stderr, /^wasm trap: unreachable$/m);
    });
  });

  it('reads a file of its image through the preopened rootfs', async () => {
    await withPod('wasm-files', async (podId, pod) => {
      const { status, stdout } = await runToExit(podId, pod, wasm('reader', ['/read-file.wasm']));
      assert.equal(status.exitCode, 0);
      assert.equal(stdout, 'a file from the rootfs\n');
    });
  });

  describe('mounts', () => {
    /** Host files the containers mount, removed after the tests. */
    let host: string;

    before(async () => {
      host = await mkdtemp(join(tmpdir(), 'kuasar-wasm-mounts-'));
      await writeFile(join(host, 'app.conf'), 'from the host\n');
      await writeFile(join(host, 'hosts'), '127.0.0.1\tlocalhost kubelet-managed\n');
      await mkdir(join(host, 'volume'));
      await writeFile(join(host, 'volume/in-volume.txt'), 'in the volume\n');
      await writeFile(join(host, 'inner.txt'), 'nested in the volume\n');
      await symlink('/', join(host, 'volume/escape'));
      await mkdir(join(host, 'out'));
    });

    after(async () => {
      await rm(host, { recursive: true, force: true });
    });

    /** `config` with CRI mounts (container path -> host path, read-only when asked) and a read-only rootfs if asked. */
    function withMounts(config: ContainerConfig, mounts: [string, string, 'ro'?][], readonlyRootfs = false): ContainerConfig {
      config.mounts = mounts.map(([containerPath, hostPath, ro]) =>
        create(MountSchema, { containerPath, hostPath, readonly: ro === 'ro' }),
      );
      if (readonlyRootfs) config.linux = create(LinuxContainerConfigSchema, { securityContext: { readonlyRootfs } });
      return config;
    }

    it("sees every bind mount at its destination: a read-only file, kubelet's /etc/hosts, a directory and a file inside it", async () => {
      await withPod('wasm-mounts', async (podId, pod) => {
        const mounts: [string, string, 'ro'?][] = [
          ['/config/app.conf', join(host, 'app.conf'), 'ro'],
          // kubelet hands every container its pod's hosts file as a CRI mount like this one.
          ['/etc/hosts', join(host, 'hosts')],
          ['/vol', join(host, 'volume')],
          ['/vol/nested/inner.txt', join(host, 'inner.txt')],
        ];
        const read = (name: string, path: string) => runToExit(podId, pod, withMounts(wasm(name, ['/read-file.wasm', path]), mounts));
        const expected: [string, string][] = [
          ['/config/app.conf', 'from the host\n'],
          ['/etc/hosts', '127.0.0.1\tlocalhost kubelet-managed\n'],
          ['/vol/in-volume.txt', 'in the volume\n'],
          ['/vol/nested/inner.txt', 'nested in the volume\n'],
          ['/data/message.txt', 'a file from the rootfs\n'],
        ];
        for (const [index, [path, text]] of expected.entries()) {
          const { status, stdout } = await read(`reader-${index}`, path);
          assert.deepEqual({ exitCode: status.exitCode, stdout }, { exitCode: 0, stdout: text }, path);
        }
        const write = await runToExit(podId, pod, withMounts(wasm('writer', ['/write-file.wasm', '/config/app.conf']), mounts));
        assert.equal(write.status.exitCode, 69, 'a read-only mount refuses writes (WASI EROFS)');
        assert.equal(await readFile(join(host, 'app.conf'), 'utf8'), 'from the host\n');
        // A link in a volume cannot lead out to the host: the kernel follows none (10 + WASI ELOOP).
        const escaped = await read('escaper', '/vol/escape/etc/hostname');
        assert.deepEqual({ exitCode: escaped.status.exitCode, stdout: escaped.stdout }, { exitCode: 42, stdout: '' });
      });
    });

    it('refuses writes to a read-only rootfs but not to its read-write mounts; a writable rootfs takes them', async () => {
      await withPod('wasm-readonly-rootfs', async (podId, pod) => {
        const write = (name: string, path: string, readonlyRootfs: boolean) =>
          runToExit(podId, pod, withMounts(wasm(name, ['/write-file.wasm', path]), [['/out', join(host, 'out')]], readonlyRootfs));
        assert.equal((await write('readonly-root', '/data/new.txt', true)).status.exitCode, 69, 'WASI EROFS');
        assert.equal((await write('readonly-root-mount', '/out/from-readonly.txt', true)).status.exitCode, 0);
        assert.equal(await readFile(join(host, 'out/from-readonly.txt'), 'utf8'), 'written\n');
        assert.equal((await write('writable-root', '/data/new.txt', false)).status.exitCode, 0);
        // With no mount point to make in it, the rootfs is mounted read-only from the start.
        const alone = await runToExit(podId, pod, withMounts(wasm('readonly-alone', ['/write-file.wasm', '/data/new.txt']), [], true));
        assert.equal(alone.status.exitCode, 69, 'WASI EROFS without any bind mount');
      });
    });

    it('fails with the mount named when its mount point cannot be made, leaving nothing mounted', async () => {
      await withPod('wasm-bad-mount', async (podId, pod) => {
        // /etc/hosts is bound first (CRI orders mounts by depth); then /data/message.txt is a file.
        const config = withMounts(wasm('bad', ['/read-file.wasm']), [
          ['/etc/hosts', join(host, 'hosts')],
          ['/data/message.txt/inner', join(host, 'app.conf')],
        ]);
        await assert.rejects(start(podId, pod, config), /mount at \/data\/message\.txt\/inner: a part of the path is not a directory/);
      });
    });
  });

  it('stops an endless module through CRI, while another module of the pod runs to its end', async () => {
    await withPod('wasm-stop', async (podId, pod) => {
      const { containerId } = await start(podId, pod, wasm('spinner', ['/loop.wasm']));
      const running = await env.cri.runtime.containerStatus({ containerId });
      assert.equal(running.status?.state, ContainerState.CONTAINER_RUNNING);
      const stats = await env.cri.runtime.containerStats({ containerId });
      assert.ok((stats.stats?.memory?.workingSetBytes?.value ?? 0n) > 0n, "kubelet's stats call gets the instance's memory");

      // The endless loop holds one thread; the daemon and other instances go on.
      const hello = await runToExit(podId, pod, wasm('hello', ['/hello.wasm']));
      assert.equal(hello.status.exitCode, 0);
      assert.match(hello.stdout, /^hello$/m);

      await env.cri.runtime.stopContainer({ containerId, timeout: 1n });
      const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
      // WASI modules have no signal handlers: SIGTERM ends the instance at once.
      assert.equal(status.exitCode, 143);
    });
  });

  it('stops a module asleep for an hour, and one blocked reading its stdin, with SIGTERM (no escalation to SIGKILL)', async () => {
    await withPod('wasm-stop-blocked', async (podId, pod) => {
      const sleeper = await start(podId, pod, wasm('sleeper', ['/sleep.wasm']));
      // Its rootfs (a snapshot: no bind mount of the spec) refuses symbolic links from the start.
      const [rootfsMount] = await mountsUnder(join(env.paths.kuasarState, 'wasm', podId, 'containers', sleeper.containerId));
      assert.ok(rootfsMount?.options.includes('nosymfollow'), `the rootfs mount is nosymfollow: ${rootfsMount?.options.join(',')}`);
      // With stdin and no attach, containerd keeps the stdin FIFO open and sends nothing.
      const reader = await start(podId, pod, wasm('reader', ['/cat.wasm'], { stdin: true }));
      for (const { containerId } of [sleeper, reader]) {
        assert.equal((await env.cri.runtime.containerStatus({ containerId })).status?.state, ContainerState.CONTAINER_RUNNING);
        // A SIGTERM that could not wake the module would end in CRI's SIGKILL after the timeout: 137.
        await env.cri.runtime.stopContainer({ containerId, timeout: 60n });
        const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
        assert.equal(status.exitCode, 143);
      }
    });
  });

  for (const io of ['fifo', 'streaming'] as const) {
    it(`feeds stdin from an attach to the module, and end-of-file when a stdin-once attach ends (${io} io)`, async () => {
      await withPod(
        `wasm-stdin-${io}`,
        async (podId, pod) => {
          const { containerId, config } = await start(podId, pod, wasm('cat', ['/cat.wasm'], { stdin: true, stdinOnce: true }));
          const { url } = await env.cri.runtime.attach({ containerId, stdin: true, stdout: true, stderr: true, tty: false });
          const session = await RemoteCommand.connect(url);
          session.writeStdin('through stdin\n');
          await session.waitForStdout(/through stdin\n/, 10_000);
          session.close();
          const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
          assert.equal(status.exitCode, 0, 'cat.wasm read end-of-file and exited 0');
          assert.equal(criLogText(await readContainerLog(containerLogPath(pod, config)), 'stdout'), 'through stdin\n');
        },
        io === 'fifo' ? env.handlers.kuasar['wasm'] : env.handlers.kuasarStreaming['wasm'],
      );
    });
  }

  it('caps linear memory at the memory limit: a module that grows past it is OOMKilled', async () => {
    await withPod('wasm-oom', async (podId, pod) => {
      const hog = await runToExit(podId, pod, wasm('hog', ['/memory-hog.wasm'], {}, 16n * MiB));
      assert.equal(hog.status.exitCode, 137);
      assert.equal(hog.status.reason, 'OOMKilled');
      assert.match(hog.stderr, /out of memory: the module's linear memory reached the container's limit of 16777216 bytes/);
      // Without a limit of its own, the kind's default (256 MiB) caps it: kuasard must not grow without bound.
      const unlimited = await runToExit(podId, pod, wasm('unlimited-hog', ['/memory-hog.wasm']));
      assert.equal(unlimited.status.reason, 'OOMKilled');
      assert.match(unlimited.stderr, /reached the container's limit of 268435456 bytes/);
      // A trap far below the limit is an ordinary error.
      const trap = await runToExit(podId, pod, wasm('trap', ['/trap.wasm'], {}, 16n * MiB));
      assert.equal(trap.status.reason, 'Error');
    });
  });

  it(`runs ${DENSE_CONTAINERS} idle containers in one pod, among them a runaway loop and a memory hog; a hello in another pod still starts and prints`, async () => {
    await withPod('wasm-dense', async (podId, pod) => {
      const started = await inPool(
        Array.from({ length: DENSE_CONTAINERS }, (_, i) => i),
        8,
        (i) => start(podId, pod, wasm(`idle-${i}`, ['/sleep.wasm'])),
      );
      assert.deepEqual(
        started.flatMap((r) => (r.status === 'rejected' ? [String(r.reason)] : [])),
        [],
        'every idle container started',
      );
      const runaway = await start(podId, pod, wasm('runaway', ['/loop.wasm']));
      const hog = await runToExit(podId, pod, wasm('hog', ['/memory-hog.wasm'], {}, 64n * MiB));
      assert.equal(hog.status.reason, 'OOMKilled', 'the hog ends at its own limit');

      // Another pod, beside them all: its own leak check (withPod's descriptor check would see this pod's instances).
      const { leaks } = await runPod(
        env,
        env.handlers.kuasar['wasm'] ?? '',
        env.podConfig({ name: 'wasm-dense-hello' }),
        [],
        async (run) => {
          const hello = await runToExit(run.podId, run.pod, wasm('hello', ['/hello.wasm']));
          assert.equal(hello.status.exitCode, 0);
          assert.match(hello.stdout, /^hello$/m);
        },
      );
      assert.deepEqual(leaks, NO_LEAKS);

      const listed = await env.cri.runtime.listContainers({
        filter: { podSandboxId: podId, state: { state: ContainerState.CONTAINER_RUNNING } },
      });
      assert.equal(listed.containers.length, DENSE_CONTAINERS + 1, 'the idle containers and the runaway loop still run');
      await env.cri.runtime.stopContainer({ containerId: runaway.containerId, timeout: 1n });
      assert.equal((await env.cri.waitForContainerState(runaway.containerId, ContainerState.CONTAINER_EXITED, WAIT)).exitCode, 143);
    });
  });

  it('refuses exec with a clear message', async () => {
    await withPod('wasm-exec', async (podId, pod) => {
      const { containerId } = await start(podId, pod, wasm('sleeper', ['/sleep.wasm']));
      await assert.rejects(
        env.cri.runtime.execSync({ containerId, cmd: ['/hello.wasm'], timeout: 5n }),
        /exec is not supported by the wasm kind/,
      );
    });
  });

  it('keeps a running module through a containerd restart', async () => {
    await withPod('wasm-containerd-restart', async (podId, pod) => {
      const { containerId } = await start(podId, pod, wasm('sleeper', ['/sleep.wasm']));
      await env.restartContainerd();
      const after = await env.cri.runtime.containerStatus({ containerId });
      assert.equal(after.status?.state, ContainerState.CONTAINER_RUNNING, 'Connect and Pids found the instance');
      await env.cri.runtime.stopContainer({ containerId, timeout: 1n });
      const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
      assert.equal(status.exitCode, 143);
    });
  });

  // Last: it restarts the environment's kuasard.
  it("reports a module that was running when kuasard crashed as exited 255, with the reason in kuasard's log", async () => {
    await withPod('wasm-restart', async (podId, pod) => {
      const { containerId } = await start(podId, pod, wasm('sleeper', ['/sleep.wasm']));
      await env.restartKuasard({ crash: true });
      const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
      assert.equal(status.exitCode, 255);
      assert.match(
        env.logs(200).kuasard,
        new RegExp(
          `"container":"${containerId}","msg":"the container ended with the previous kuasard \\(the wasm kind's containers do not outlive it\\)`,
        ),
      );

      // containerd's controller connection comes back after its reconnect backoff.
      await untilAnswered(() => env.cri.runtime.podSandboxStatus({ podSandboxId: podId }));
      // The pod's task API still serves new containers.
      const hello = await runToExit(podId, pod, wasm('hello', ['/hello.wasm']));
      assert.equal(hello.status.exitCode, 0);
    });
  });
});
