// Terminals on the vmm kind through CRI, as kubectl uses them: `kubectl exec -it` (CRI's
// streaming Exec with a tty) and `kubectl attach -it` to a container made with tty and stdin.
// The terminal is a pty that runc makes in the guest; the agent holds its master and kuasard
// forwards between it and containerd. Each test runs with containerd's FIFOs and with streaming
// io, and checks that nothing is left: no QEMU, mount, socket or file.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ContainerState } from '../../src/cri/client.js';
import { criLogText, readContainerLog } from '../../src/cri/log.js';
import { RemoteCommand } from '../../src/cri/remote-command.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { NO_LEAKS } from '../../src/devenv/leaks.js';
import { vmProcesses } from '../../src/devenv/vm-processes.js';
import { runPod, startRunning, type PodRun } from '../../src/devenv/pod-runs.js';
import { containerConfig, containerLogPath } from '../../src/devenv/pods.js';

/** Under TCG a VM boots in seconds; CRI waits are generous. */
const WAIT = { timeoutMs: 60_000 };
/** How long a terminal's answer may take to come back through the VM. */
const ANSWER_MS = 30_000;
/**
 * A shell line that waits until the terminal is 40 rows by 100 columns, then reports it. A new
 * terminal has no size (0 by 0) until it is resized: stty complains about that, quietly here.
 */
const AWAIT_RESIZE = 'while [ "$(stty size 2>/dev/null)" != "40 100" ]; do sleep 0.05; done; echo size=$(stty size)';
/** Terminal execs that write a burst and exit at once: everything reaches the client all the same. */
const TTY_BURSTS = 3;
const TTY_BURST_BYTES = 20_000;
/** What a user types for end-of-file on a terminal (Ctrl-D). */
const CTRL_D = '\x04';

describe('vmm kind: terminals through CRI', () => {
  let env: Environment;

  before(async () => {
    env = await startEnvironment({ streamingHandlers: true });
  });

  after(async () => {
    await env?.stop();
  });

  const handlers = () => ({ fifo: env.handlers.kuasar['vmm'] ?? '', streaming: env.handlers.kuasarStreaming['vmm'] ?? '' });

  const qemuProcesses = (sandboxId?: string) => vmProcesses(env.scope, sandboxId);

  /** Runs a pod on `handler`, calls `body`, removes the pod and checks that nothing stayed. */
  async function withPod(name: string, handler: string, body: (run: PodRun) => Promise<void>) {
    const { leaks } = await runPod(env, handler, env.podConfig({ name }), [env.paths.kuasarState], body);
    assert.deepEqual(leaks, NO_LEAKS);
    assert.deepEqual(
      qemuProcesses().map((p) => p.cmdline),
      [],
      'no QEMU process is left',
    );
  }

  /** `kubectl exec -it`: CRI's streaming Exec with stdin and a terminal. */
  async function execWithTerminal(containerId: string, cmd: string[]) {
    const { url } = await env.cri.runtime.exec({ containerId, cmd, stdin: true, stdout: true, stderr: false, tty: true });
    return RemoteCommand.connect(url);
  }

  /** `kubectl attach -it`. */
  async function attachWithTerminal(containerId: string) {
    const { url } = await env.cri.runtime.attach({ containerId, stdin: true, stdout: true, stderr: false, tty: true });
    return RemoteCommand.connect(url);
  }

  for (const io of ['fifo', 'streaming'] as const) {
    it(`gives a streaming exec a terminal (${io} io): tty names /dev/pts/N, a resize is read back, typed input, its exit code, a burst before the exit whole, a child left holding the terminal`, async () => {
      await withPod(`vmm-exec-tty-${io}`, handlers()[io], async (run) => {
        const { containerId } = await startRunning(
          env,
          run,
          containerConfig({ name: 'idle', image: env.images.busybox, command: ['sleep', '3600'] }),
        );
        const exec = await execWithTerminal(containerId, ['sh', '-c', `tty; ${AWAIT_RESIZE}; read line; echo got=$line; exit 9`]);
        await exec.waitForStdout(/^\/dev\/pts\/\d+\r\n/, ANSWER_MS);
        exec.resize(100, 40);
        await exec.waitForStdout(/size=40 100\r\n/, ANSWER_MS);
        exec.writeStdin('typed\r');
        const result = await exec.done;
        // The terminal echoes what was typed, then the shell answers.
        assert.match(result.stdout, /^\/dev\/pts\/\d+\r\nsize=40 100\r\ntyped\r\ngot=typed\r\n$/);
        assert.equal(result.exitCode, 9);

        const plain = await execWithTerminal(containerId, ['tty']);
        const { stdout, exitCode } = await plain.done;
        assert.match(stdout, /^\/dev\/pts\/\d+\r\n$/, 'every exec has a terminal of its own');
        assert.equal(exitCode, 0);

        // A child keeps the terminal's other side open for an hour: the exec's end is reported all the same.
        const leaver = await (await execWithTerminal(containerId, ['sh', '-c', 'sleep 3600 & tty; exit 2'])).done;
        assert.match(leaver.stdout, /^\/dev\/pts\/\d+\r\n$/);
        assert.equal(leaver.exitCode, 2);

        // More than the terminal hands on per read (4 KiB), then the exit: the output ends only
        // once the guest's terminal has given all of it.
        const received: number[] = [];
        for (let n = 0; n < TTY_BURSTS; n++) {
          const burst = await execWithTerminal(containerId, ['sh', '-c', `head -c ${TTY_BURST_BYTES} /dev/zero | tr '\\0' y; exit 3`]);
          const done = await burst.done;
          assert.equal(done.exitCode, 3);
          assert.match(done.stdout, /^y*$/);
          received.push(done.stdout.length);
        }
        assert.deepEqual(received, Array(TTY_BURSTS).fill(TTY_BURST_BYTES), 'bytes received of each burst');
      });
    });

    it(`runs a container with a terminal and stdin (${io} io): attach resizes it, what is typed is echoed, Ctrl-D ends cat; all of it in the CRI log`, async () => {
      await withPod(`vmm-tty-${io}`, handlers()[io], async (run) => {
        const config = containerConfig({
          name: 'term',
          image: env.images.busybox,
          command: ['sh', '-c', `tty; ${AWAIT_RESIZE}; cat; echo cat-ended; exit 5`],
          tty: true,
          stdin: true,
          stdinOnce: true,
        });
        const { containerId } = await env.cri.runtime.createContainer({ podSandboxId: run.podId, config, sandboxConfig: run.pod });
        await env.cri.runtime.startContainer({ containerId });
        const session = await attachWithTerminal(containerId);
        session.resize(100, 40);
        await session.waitForStdout(/size=40 100\r\n/, ANSWER_MS);
        session.writeStdin('hello\r');
        // Echoed by the terminal, then written back by cat.
        await session.waitForStdout(/size=40 100\r\nhello\r\nhello\r\n/, ANSWER_MS);
        // A terminal's input has no end of its own (CRI does not close a terminal's stdin when
        // an attach ends): end-of-file is what the user types.
        session.writeStdin(CTRL_D);
        await session.waitForStdout(/hello\r\nhello\r\ncat-ended\r\n$/, ANSWER_MS);
        const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
        assert.equal(status.exitCode, 5);
        session.close();
        // CRI's log keeps lines, without the terminal's carriage returns.
        const log = criLogText(await readContainerLog(containerLogPath(run.pod, config)), 'stdout');
        assert.match(log, /^\/dev\/pts\/0\nsize=40 100\nhello\nhello\ncat-ended\n$/, "the container's own terminal, and all it showed");
      });
    });
  }
});
