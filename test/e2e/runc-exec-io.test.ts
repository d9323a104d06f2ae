// Processes and their stdio on the runc kind, through an unmodified containerd 2.x: exec
// (CRI ExecSync, and the streaming Exec/Attach of CRI's streaming server), terminals, stdin
// with end-of-file, and streaming io (io_type = "streaming"). Every test removes its pod and
// checks that nothing stayed behind.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PodSandboxConfig } from '../../src/api/cri/runtime/v1/api_pb.js';
import { ContainerState } from '../../src/cri/client.js';
import { criLogText, readContainerLog } from '../../src/cri/log.js';
import { RemoteCommand } from '../../src/cri/remote-command.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { NO_LEAKS } from '../../src/devenv/leaks.js';
import { runPod } from '../../src/devenv/pod-runs.js';
import { containerConfig, containerLogPath, type ContainerOptions } from '../../src/devenv/pods.js';

const WAIT = { timeoutMs: 30_000 };
/** How many short-lived execs each handler runs, with a terminal and without. */
const SHORT_EXECS = 50;
/** Terminal execs that write a burst and exit at once: Node's tty stream alone lost the tail of 7 in 10. */
const TTY_BURSTS = 5;
const TTY_BURST_BYTES = 20_000;

describe('runc kind: exec, terminals, stdin and streaming io through CRI', () => {
  let env: Environment;

  before(async () => {
    env = await startEnvironment({ streamingHandlers: true });
  });

  after(async () => {
    await env?.stop();
  });

  /** Runs a pod on `handler`, calls `body`, then removes the pod and checks nothing stayed. */
  async function withPod(
    name: string,
    body: (podId: string, pod: PodSandboxConfig) => Promise<void>,
    handler = env.handlers.kuasar['runc'],
  ) {
    const watched = [env.paths.kuasarState, `${env.paths.kuasarState}/runc.oci`, `${env.paths.kuasarState}/runc.console`];
    let podId = '';
    const { leaks } = await runPod(env, handler ?? '', env.podConfig({ name }), watched, (run) => {
      podId = run.podId;
      return body(podId, run.pod);
    });
    assert.equal(existsSync(join(env.paths.kuasarState, 'runc', podId)), false, 'the sandbox state directory is removed');
    assert.deepEqual(leaks, NO_LEAKS);
  }

  async function startContainer(podId: string, pod: PodSandboxConfig, options: ContainerOptions) {
    const config = containerConfig(options);
    const { containerId } = await env.cri.runtime.createContainer({ podSandboxId: podId, config, sandboxConfig: pod });
    await env.cri.runtime.startContainer({ containerId });
    return { containerId, logPath: containerLogPath(pod, config) };
  }

  const sleeper = (name = 'sleeper'): ContainerOptions => ({ name, image: env.images.busybox, command: ['sleep', '3600'] });

  /** CRI's streaming Exec, through containerd's streaming server. */
  async function streamingExec(containerId: string, cmd: string[], options: { stdin?: boolean; tty?: boolean } = {}) {
    const { url } = await env.cri.runtime.exec({
      containerId,
      cmd,
      stdin: options.stdin ?? false,
      stdout: true,
      stderr: !options.tty,
      tty: options.tty ?? false,
    });
    return RemoteCommand.connect(url);
  }

  async function attach(containerId: string, tty: boolean) {
    const { url } = await env.cri.runtime.attach({ containerId, stdin: true, stdout: true, stderr: !tty, tty });
    return RemoteCommand.connect(url);
  }

  /**
   * `tty` through CRI's streaming Exec with a terminal: whether its output (the terminal's path)
   * arrived. stdin is on, as with `kubectl exec -it`: without it, CRI's WebSocket server hands
   * containerd a stdin that ends at once, and for a terminal containerd then closes its end of
   * the output (internal/cri/io/exec_io.go), racing the copy of whatever the process wrote;
   * that loses output on containerd's own runc handler as well.
   */
  async function ttyExecDelivers(containerId: string): Promise<boolean> {
    const exec = await streamingExec(containerId, ['tty'], { stdin: true, tty: true });
    const result = await exec.done;
    return result.exitCode === 0 && /^\/dev\/pts\/\d+\r\n$/.test(result.stdout);
  }

  /** A process without a terminal that writes a line to each output and exits at once (ExecSync: pipes or streams). */
  async function pipeExecDelivers(containerId: string, n: number): Promise<boolean> {
    const result = await env.cri.runtime.execSync({ containerId, cmd: ['sh', '-c', `echo out-${n}; echo err-${n} >&2`], timeout: 30n });
    return Buffer.from(result.stdout).toString() === `out-${n}\n` && Buffer.from(result.stderr).toString() === `err-${n}\n`;
  }

  /** How many of `times` runs of `attempt` returned true. */
  async function successes(times: number, attempt: (n: number) => Promise<boolean>): Promise<number> {
    let count = 0;
    for (let n = 0; n < times; n++) if (await attempt(n)) count++;
    return count;
  }

  /** Runs `cmd` with ExecSync until its stdout satisfies `done` (or the wait times out). */
  async function execUntil(containerId: string, cmd: string[], done: (stdout: string) => boolean): Promise<string> {
    const deadline = Date.now() + WAIT.timeoutMs;
    for (;;) {
      const stdout = Buffer.from((await env.cri.runtime.execSync({ containerId, cmd, timeout: 10n })).stdout).toString();
      if (done(stdout) || Date.now() > deadline) return stdout;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** A shell line that waits until the terminal is 40 rows by 100 columns, then reports it. */
  const AWAIT_RESIZE = 'while [ "$(stty size)" != "40 100" ]; do sleep 0.05; done; echo size=$(stty size)';

  it('ExecSync returns stdout, stderr and the exit code', async () => {
    await withPod('execsync', async (podId, pod) => {
      const { containerId } = await startContainer(podId, pod, sleeper());
      const result = await env.cri.runtime.execSync({ containerId, cmd: ['sh', '-c', 'echo out; echo err >&2; exit 7'], timeout: 10n });
      assert.equal(Buffer.from(result.stdout).toString(), 'out\n');
      assert.equal(Buffer.from(result.stderr).toString(), 'err\n');
      assert.equal(result.exitCode, 7);
      // The exec ran inside the container: it sees the container's own PID namespace.
      const ps = await env.cri.runtime.execSync({ containerId, cmd: ['sh', '-c', 'echo $$; cat /proc/1/cmdline'], timeout: 10n });
      const [, cmdline] = Buffer.from(ps.stdout).toString().split('\n');
      assert.equal(cmdline, 'sleep\u00003600\u0000');
      assert.equal(ps.exitCode, 0);
    });
  });

  it(`delivers all that short-lived execs wrote before their exit: ${SHORT_EXECS} with a terminal, ${SHORT_EXECS} without, over FIFO and streaming io (containerd's runc alongside)`, async (t) => {
    const handlers = {
      'kuasar-runc (fifo)': env.handlers.kuasar['runc'],
      'kuasar-runc (streaming)': env.handlers.kuasarStreaming['runc'],
      'containerd runc (baseline)': env.handlers.baseline,
    };
    const delivered: Record<string, { tty: number; pipe: number }> = {};
    for (const [label, handler] of Object.entries(handlers)) {
      await withPod(
        `shortexecs-${Object.keys(delivered).length}`,
        async (podId, pod) => {
          const { containerId } = await startContainer(podId, pod, sleeper());
          const tty = await successes(SHORT_EXECS, () => ttyExecDelivers(containerId));
          const pipe = await successes(SHORT_EXECS, (n) => pipeExecDelivers(containerId, n));
          delivered[label] = { tty, pipe };
        },
        handler,
      );
    }
    t.diagnostic(
      Object.entries(delivered)
        .map(([label, d]) => `${label}: tty ${d.tty}/${SHORT_EXECS}, pipe ${d.pipe}/${SHORT_EXECS}`)
        .join('; '),
    );
    for (const label of ['kuasar-runc (fifo)', 'kuasar-runc (streaming)']) {
      assert.deepEqual(delivered[label], { tty: SHORT_EXECS, pipe: SHORT_EXECS }, label);
    }
  });

  it("reports a terminal exec's exit, with its output, although a child it left holds the terminal", { timeout: 300_000 }, async () => {
    await withPod('ttychild', async (podId, pod) => {
      const { containerId } = await startContainer(podId, pod, sleeper());
      // The child keeps the pty's other side open for an hour: the exec's output ends without it.
      const exec = await streamingExec(containerId, ['sh', '-c', 'sleep 3600 & tty'], { stdin: true, tty: true });
      const result = await exec.done;
      assert.match(result.stdout, /^\/dev\/pts\/\d+\r\n$/);
      assert.equal(result.exitCode, 0);
    });
  });

  it("ExecSync of a missing binary fails at once with the runtime's reason", async () => {
    await withPod('execmissing', async (podId, pod) => {
      const { containerId } = await startContainer(podId, pod, sleeper());
      // The runtime's reason, not the ExecSync deadline running out.
      await assert.rejects(
        env.cri.runtime.execSync({ containerId, cmd: ['no-such-binary'], timeout: 30n }),
        /no-such-binary.*(not found|no such file)/i,
      );
      // The container and the daemon go on serving execs.
      const after = await env.cri.runtime.execSync({ containerId, cmd: ['echo', 'still here'], timeout: 10n });
      assert.equal(Buffer.from(after.stdout).toString(), 'still here\n');
      const status = await env.cri.runtime.containerStatus({ containerId });
      assert.equal(status.status?.state, ContainerState.CONTAINER_RUNNING);
    });
  });

  for (const io of ['fifo', 'streaming'] as const) {
    const handler = () => (io === 'fifo' ? env.handlers.kuasar['runc'] : env.handlers.kuasarStreaming['runc']);

    it(`ends an exec's stdin when its client goes away (${io} io): the process reads end-of-file`, async () => {
      await withPod(
        `execstdin-${io}`,
        async (podId, pod) => {
          const { containerId } = await startContainer(podId, pod, sleeper());
          const script = 'echo ready; cat > /tmp/in; echo eof-seen > /tmp/eof';
          const exec = await streamingExec(containerId, ['sh', '-c', script], { stdin: true });
          await exec.waitForStdout(/ready\n/, 10_000);
          // More than a flow-control window (64 KiB) of streaming io.
          exec.writeStdin(Buffer.alloc(200_000, 'x'));
          // CRI's streaming server over WebSocket (protocol v4) ends stdin when the connection ends.
          exec.close();
          await exec.done;
          assert.equal(await execUntil(containerId, ['cat', '/tmp/eof'], (out) => out !== ''), 'eof-seen\n');
          const size = await env.cri.runtime.execSync({ containerId, cmd: ['sh', '-c', 'wc -c < /tmp/in'], timeout: 10n });
          assert.equal(Buffer.from(size.stdout).toString().trim(), '200000');
        },
        handler(),
      );
    });

    it(`gives an exec a terminal (${io} io): tty, resize, typed input, exit code`, async () => {
      await withPod(
        `exectty-${io}`,
        async (podId, pod) => {
          const { containerId } = await startContainer(podId, pod, sleeper());
          const exec = await streamingExec(containerId, ['sh', '-c', `tty; ${AWAIT_RESIZE}; read line; echo got=$line; exit 9`], {
            stdin: true,
            tty: true,
          });
          await exec.waitForStdout(/^\/dev\/pts\/\d+\r\n/, 10_000);
          exec.resize(100, 40);
          await exec.waitForStdout(/size=40 100\r\n/, 10_000);
          exec.writeStdin('typed\r');
          const result = await exec.done;
          assert.match(result.stdout, /got=typed\r\n$/);
          assert.equal(result.exitCode, 9);
        },
        handler(),
      );
    });

    it(`delivers all that a terminal exec wrote right before it exited (${io} io): ${TTY_BURSTS} bursts of ${TTY_BURST_BYTES} bytes`, async () => {
      await withPod(
        `ttyburst-${io}`,
        async (podId, pod) => {
          const { containerId } = await startContainer(podId, pod, sleeper());
          // More than the terminal hands on per read (4 KiB), written as fast as it goes, then the
          // exit: when the terminal hangs up, much of it is still in the kernel on its way.
          const burst = `head -c ${TTY_BURST_BYTES} /dev/zero | tr '\\0' y; exit 3`;
          const received: number[] = [];
          for (let n = 0; n < TTY_BURSTS; n++) {
            const exec = await streamingExec(containerId, ['sh', '-c', burst], { stdin: true, tty: true });
            const result = await exec.done;
            assert.equal(result.exitCode, 3);
            assert.match(result.stdout, /^y*$/);
            received.push(result.stdout.length);
          }
          assert.deepEqual(received, Array(TTY_BURSTS).fill(TTY_BURST_BYTES), 'bytes received of each burst');
        },
        handler(),
      );
    });

    it(`runs a container with a terminal (${io} io): attach resizes it and types into it; its output is in the CRI log`, async () => {
      await withPod(
        `tty-${io}`,
        async (podId, pod) => {
          const { containerId, logPath } = await startContainer(podId, pod, {
            name: 'term',
            image: env.images.busybox,
            command: ['sh', '-c', `tty; ${AWAIT_RESIZE}; read line; echo got=$line; exit 5`],
            tty: true,
            stdin: true,
          });
          const session = await attach(containerId, true);
          session.resize(100, 40);
          await session.waitForStdout(/size=40 100\r\n/, 10_000);
          session.writeStdin('hello\r');
          await session.waitForStdout(/got=hello\r\n/, 10_000);
          const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
          assert.equal(status.exitCode, 5);
          session.close();
          // CRI's log keeps lines, without the terminal's carriage returns.
          const log = criLogText(await readContainerLog(logPath), 'stdout');
          assert.match(log, /^\/dev\/pts\/0$/m, "the container's own terminal");
          assert.match(log, /^size=40 100$/m);
          assert.match(log, /^got=hello$/m);
        },
        handler(),
      );
    });

    it(`closes a stdin-once container's stdin when its attach ends (${io} io): cat reads end-of-file`, async () => {
      await withPod(
        `stdinonce-${io}`,
        async (podId, pod) => {
          const { containerId, logPath } = await startContainer(podId, pod, {
            name: 'cat',
            image: env.images.busybox,
            command: ['sh', '-c', 'cat; echo eof-seen'],
            stdin: true,
            stdinOnce: true,
          });
          const session = await attach(containerId, false);
          session.writeStdin('through stdin\n');
          await session.waitForStdout(/through stdin\n/, 10_000);
          session.close();
          const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
          assert.equal(status.exitCode, 0);
          assert.equal(criLogText(await readContainerLog(logPath), 'stdout'), 'through stdin\neof-seen\n');
        },
        handler(),
      );
    });
  }

  it("runs a streaming-io handler's containers and execs: output reaches the CRI log and ExecSync", async () => {
    await withPod(
      'streaming',
      async (podId, pod) => {
        const { containerId, logPath } = await startContainer(podId, pod, {
          name: 'talker',
          image: env.images.busybox,
          command: ['sh', '-c', 'echo to-stdout; echo to-stderr >&2; exit 4'],
        });
        const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
        assert.equal(status.exitCode, 4);
        const log = await readContainerLog(logPath);
        assert.equal(criLogText(log, 'stdout'), 'to-stdout\n');
        assert.equal(criLogText(log, 'stderr'), 'to-stderr\n');

        const { containerId: running } = await startContainer(podId, pod, sleeper());
        const result = await env.cri.runtime.execSync({
          containerId: running,
          cmd: ['sh', '-c', 'echo exec-out; echo exec-err >&2; exit 3'],
          timeout: 10n,
        });
        assert.equal(Buffer.from(result.stdout).toString(), 'exec-out\n');
        assert.equal(Buffer.from(result.stderr).toString(), 'exec-err\n');
        assert.equal(result.exitCode, 3);
        // Many flow-control windows (64 KiB each) of output.
        const big = await env.cri.runtime.execSync({
          containerId: running,
          cmd: ['sh', '-c', 'head -c 1000000 /dev/zero | tr "\\0" y'],
          timeout: 10n,
        });
        assert.equal(Buffer.from(big.stdout).toString(), 'y'.repeat(1_000_000));
      },
      env.handlers.kuasarStreaming['runc'],
    );
  });
});
