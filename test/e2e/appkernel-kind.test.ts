// The appkernel kind end to end: an unmodified containerd 2.x, driven through CRI as kubelet
// drives it, runs pods on kuasard's `kuasar-appkernel` handler, each pod one gVisor sandbox made
// by runsc. The tests check what a user sees: the containers of a pod in gVisor's kernel and on
// the pod's network, their logs, execs, exit codes, stops, stats, and pods that outlive a crash
// of kuasard; and that removing a pod leaves nothing of it, no runsc process above all.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { release } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { PodSandboxState, type PodSandboxConfig } from '../../src/api/cri/runtime/v1/api_pb.js';
import { ContainerState } from '../../src/cri/client.js';
import { criLogText, readContainerLog } from '../../src/cri/log.js';
import { RemoteCommand } from '../../src/cri/remote-command.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { diffHost, NO_LEAKS, snapshotHost, untilInitReaped } from '../../src/devenv/leaks.js';
import { processesOfScope } from '../../src/devenv/ownership.js';
import { runPod, type PodRun } from '../../src/devenv/pod-runs.js';
import { containerConfig, containerLogPath, type ContainerOptions } from '../../src/devenv/pods.js';
import { listProcesses } from '../../src/devenv/processes.js';
import { untilAnswered } from '../../src/devenv/retry.js';

const WAIT = { timeoutMs: 30_000 };
const MiB = 1024n * 1024n;
/** Pods that live through a crash of kuasard. */
const RESTART_PODS = 10;
/** What the pods' web server serves. */
const PAGE = 'hello from the pod';

describe('appkernel kind through CRI', () => {
  let env: Environment;

  before(async () => {
    env = await startEnvironment();
  });

  after(async () => {
    await env?.stop();
  });

  const handler = () => env.handlers.kuasar['appkernel'] ?? '';

  /** runsc's sandboxes and gofers of this environment (runsc names them so in their command line). */
  const runscProcesses = () => {
    const processes = listProcesses();
    const ours = processesOfScope(processes, env.scope);
    return processes.filter((p) => ours.has(p.pid) && /^runsc-(sandbox|gofer)\b/.test(p.cmdline)).map((p) => p.cmdline);
  };

  /** After a crash of kuasard, what ends is PID 1's to reap. */
  const settle = () => untilInitReaped(env.scope);

  /** Runs a pod on kuasar-appkernel (on the CNI bridge), calls `body`, removes the pod and checks that nothing stayed. */
  async function withPod(name: string, body: (run: PodRun) => Promise<void>) {
    const { leaks } = await runPod(env, handler(), env.podConfig({ name }), [env.paths.kuasarState], body, { settle });
    assert.deepEqual(leaks, NO_LEAKS);
    assert.deepEqual(runscProcesses(), [], 'no runsc process is left');
  }

  async function start(run: PodRun, options: ContainerOptions) {
    const config = containerConfig(options);
    const { containerId } = await env.cri.runtime.createContainer({ podSandboxId: run.podId, config, sandboxConfig: run.pod });
    await env.cri.runtime.startContainer({ containerId });
    return { containerId, logPath: containerLogPath(run.pod, config) };
  }

  const busybox = (name: string, script: string): ContainerOptions => ({ name, image: env.images.busybox, command: ['sh', '-c', script] });

  async function runToExit(run: PodRun, options: ContainerOptions) {
    const { containerId, logPath } = await start(run, options);
    const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
    return { status, stdout: criLogText(await readContainerLog(logPath), 'stdout') };
  }

  /** Reads the container's CRI log until its stdout matches `pattern`. */
  async function logUntil(logPath: string, pattern: RegExp): Promise<string> {
    const deadline = Date.now() + WAIT.timeoutMs;
    for (;;) {
      const stdout = criLogText(await readContainerLog(logPath).catch(() => []), 'stdout');
      if (pattern.test(stdout) || Date.now() > deadline) return stdout;
      await sleep(100);
    }
  }

  /** Stops the container through CRI, giving it `timeoutSecs` after SIGTERM; its exit status. */
  async function stop(containerId: string, timeoutSecs: bigint) {
    await env.cri.runtime.stopContainer({ containerId, timeout: timeoutSecs });
    return env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
  }

  const podIp = async (podSandboxId: string) => (await env.cri.runtime.podSandboxStatus({ podSandboxId })).status?.network?.ip ?? '';

  /** What runsc itself says of a container: its state file, read with kuasard's root (kuasard may be down). */
  async function runscStatus(containerId: string): Promise<string> {
    const root = join(env.paths.kuasarState, 'appkernel.runsc');
    const { stdout } = await promisify(execFile)('runsc', ['--root', root, 'state', containerId]);
    return (JSON.parse(stdout) as { status: string }).status;
  }

  /** The running kuasard of the environment. */
  const kuasardPid = () => {
    const kuasard = listProcesses().find((p) => env.scope.daemonPids.includes(p.pid) && p.cmdline.includes('kuasard.js'));
    assert.ok(kuasard, 'kuasard runs');
    return kuasard.pid;
  };

  it("runs two containers in the pod's gVisor kernel on the pod's network, reached from the host; their output is in the CRI logs", async () => {
    await withPod('shared-net', async (run) => {
      const server = await start(
        run,
        busybox('server', `echo kernel $(uname -r); mkdir /www; echo '${PAGE}' > /www/index.html; exec httpd -f -p 8080 -h /www`),
      );
      const client = await runToExit(
        run,
        busybox('client', 'echo kernel $(uname -r); until wget -q -O - http://127.0.0.1:8080/; do sleep 0.2; done'),
      );
      assert.equal(client.status.exitCode, 0);
      const serverOut = await logUntil(server.logPath, /^kernel /m);
      const kernels = [serverOut, client.stdout].map((out) => /^kernel (\S+)$/m.exec(out)?.[1]);
      assert.ok(kernels[0], `the server's log tells its kernel: ${JSON.stringify(serverOut)}`);
      assert.equal(kernels[1], kernels[0], 'both containers run on the same kernel');
      assert.notEqual(kernels[0], release(), `the containers' kernel (${kernels[0]}) is not the host's (${release()})`);
      assert.match(client.stdout, new RegExp(`^${PAGE}$`, 'm'), "the client reached the server on the pod's 127.0.0.1");

      const ip = await podIp(run.podId);
      assert.match(ip, /^\d+\.\d+\.\d+\.\d+$/, 'CRI reports the pod IP');
      const response = await fetch(`http://${ip}:8080/`);
      assert.equal(response.status, 200);
      assert.equal(await response.text(), `${PAGE}\n`, "the host reaches the server at the pod's IP");
    });
  });

  it('runs ExecSync (stdout, stderr, exit code) and a streaming exec with a terminal', async () => {
    await withPod('exec', async (run) => {
      const { containerId } = await start(run, { name: 'idle', image: env.images.busybox, command: ['sleep', '3600'] });
      const result = await env.cri.runtime.execSync({ containerId, cmd: ['sh', '-c', 'echo out; echo err >&2; exit 7'], timeout: 10n });
      assert.equal(Buffer.from(result.stdout).toString(), 'out\n');
      assert.equal(Buffer.from(result.stderr).toString(), 'err\n');
      assert.equal(result.exitCode, 7);

      // As `kubectl exec -it`: a shell on a terminal, driven through its stdin.
      const { url } = await env.cri.runtime.exec({ containerId, cmd: ['sh'], stdin: true, stdout: true, stderr: false, tty: true });
      const shell = await RemoteCommand.connect(url);
      // Not `tty`: gVisor's terminal of an exec has no /dev/pts name inside the sandbox ("not a tty").
      shell.writeStdin('[ -t 0 ] && [ -t 1 ] && echo terminal=yes; echo sum=$((6 * 7))\n');
      const output = await shell.waitForStdout(/sum=42/, WAIT.timeoutMs);
      assert.match(output, /^terminal=yes\r$/m, 'the exec has a terminal');
      shell.writeStdin('exit 4\n');
      assert.equal((await shell.done).exitCode, 4);
    });
  });

  it('reports a container that exits 3 as EXITED with exit code 3', async () => {
    await withPod('exit-code', async (run) => {
      const { status } = await runToExit(run, busybox('three', 'exit 3'));
      assert.equal(status.state, ContainerState.CONTAINER_EXITED);
      assert.equal(status.exitCode, 3);
    });
  });

  it('ends what a container left running when its init exits: a background child holding its output does not keep it running', async () => {
    await withPod('leftover-child', async (run) => {
      const { status } = await runToExit(run, busybox('leaves-a-child', 'sleep 3600 & echo parent-done; exit 5'));
      assert.equal(status.state, ContainerState.CONTAINER_EXITED);
      assert.equal(status.exitCode, 5);
    });
  });

  it('stops a container that handles SIGTERM with SIGTERM (it exits 0)', async () => {
    await withPod('stop-term', async (run) => {
      const { containerId, logPath } = await start(run, busybox('graceful', "trap 'exit 0' TERM; echo ready; while :; do sleep 1; done"));
      await logUntil(logPath, /^ready$/m);
      // Far longer than the handler needs: an exit 0 (not 137) shows SIGTERM ended it.
      const status = await stop(containerId, 60n);
      assert.equal(status.exitCode, 0);
    });
  });

  it('kills a container that ignores SIGTERM once the stop timeout has passed (137)', async () => {
    await withPod('stop-kill', async (run) => {
      const { containerId, logPath } = await start(run, busybox('stubborn', "trap '' TERM; echo ready; while :; do sleep 1; done"));
      await logUntil(logPath, /^ready$/m);
      const status = await stop(containerId, 2n);
      assert.equal(status.exitCode, 137);
    });
  });

  it('reports CPU and memory of a running container (ContainerStats)', async () => {
    await withPod('stats', async (run) => {
      const busy = 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo ready; exec sleep 3600';
      const { containerId, logPath } = await start(run, busybox('busy', busy));
      await logUntil(logPath, /^ready$/m);
      const { stats } = await env.cri.runtime.containerStats({ containerId });
      assert.equal(stats?.attributes?.id, containerId);
      const cpu = stats?.cpu?.usageCoreNanoSeconds?.value ?? 0n;
      const memory = stats?.memory?.workingSetBytes?.value ?? 0n;
      assert.ok(cpu > 0n, `the busy loop used CPU: ${cpu} ns`);
      assert.ok(memory > 0n && memory < 300n * MiB, `the container's memory is plausible: ${memory} bytes`);
    });
  });

  it(`keeps ${RESTART_PODS} pods manageable after kuasard is killed with SIGKILL; a container that exited meanwhile reports its exit code`, async () => {
    const beforeAll = snapshotHost({ dirs: [env.paths.kuasarState] });
    const pods: { podSandboxId: string; pod: PodSandboxConfig; containerId: string }[] = [];
    for (let i = 0; i < RESTART_PODS; i++) {
      const pod = env.podConfig({ name: `survivor-${i}` });
      const { podSandboxId } = await env.cri.runtime.runPodSandbox({ config: pod, runtimeHandler: handler() });
      const { containerId } = await start(
        { podId: podSandboxId, pod },
        { name: 'idle', image: env.images.busybox, command: ['sleep', '3600'] },
      );
      pods.push({ podSandboxId, pod, containerId });
    }
    const [first] = pods;
    const shortLived = await start({ podId: first!.podSandboxId, pod: first!.pod }, busybox('ends-while-down', 'sleep 3; exit 7'));

    process.kill(kuasardPid(), 'SIGKILL');
    // The container ends while no kuasard runs: runsc's sandbox keeps its status.
    while ((await runscStatus(shortLived.containerId)) !== 'stopped') await sleep(100);
    await env.restartKuasard({ crash: true });

    for (const p of pods) {
      const ready = await untilAnswered(() => env.cri.runtime.podSandboxStatus({ podSandboxId: p.podSandboxId }), WAIT.timeoutMs);
      assert.equal(ready.status?.state, PodSandboxState.SANDBOX_READY, `${p.pod.metadata?.name} is ready`);
      const { status } = await env.cri.runtime.containerStatus({ containerId: p.containerId });
      assert.equal(status?.state, ContainerState.CONTAINER_RUNNING, `the container of ${p.pod.metadata?.name} runs`);
    }
    const ended = await env.cri.waitForContainerState(shortLived.containerId, ContainerState.CONTAINER_EXITED, WAIT);
    assert.equal(ended.exitCode, 7, 'the exit that came while kuasard was down is the real one');

    for (const p of pods) {
      // gVisor delivers SIGTERM to a container's init without a handler too: it dies of it (143), or of SIGKILL.
      const { exitCode } = await stop(p.containerId, 2n);
      assert.ok([137, 143].includes(exitCode), `the container of ${p.pod.metadata?.name} is stopped (exit ${exitCode})`);
      await env.cri.runtime.removeContainer({ containerId: p.containerId });
      await env.cri.runtime.stopPodSandbox({ podSandboxId: p.podSandboxId });
      await env.cri.runtime.removePodSandbox({ podSandboxId: p.podSandboxId });
    }
    await settle();
    assert.deepEqual(diffHost(beforeAll, snapshotHost({ dirs: [env.paths.kuasarState] }), { scope: env.scope }), NO_LEAKS);
    assert.deepEqual(runscProcesses(), [], 'no runsc process is left');
  });
});
