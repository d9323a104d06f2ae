// The vmm kind across restarts, under TCG. kuasard killed with SIGKILL while VM pods run comes back
// to every VM (its QEMU watched again, its agent reconnected), and their containers and execs stay
// manageable: their CRI logs go on without a line lost (also the lines written while kuasard was
// down), an exit that came meanwhile is reported with its real status, an ExecSync under way gets
// its whole output and exit code, and ExecSync, stop and remove work afterwards. A VM that cannot
// be reached (its QEMU killed, or stopped, while kuasard was down) is ended and its pod reported
// not ready. A restart of containerd loses nothing either. Nothing is left: no QEMU above all.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { MountSchema, PodSandboxState, type ContainerConfig } from '../../src/api/cri/runtime/v1/api_pb.js';
import { ContainerState } from '../../src/cri/client.js';
import { criLogText, readContainerLog } from '../../src/cri/log.js';
import { renderKuasardConfigWith } from '../../src/devenv/config.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { diffHost, NO_LEAKS, snapshotHost, untilInitReaped } from '../../src/devenv/leaks.js';
import { startRunning, type PodRun } from '../../src/devenv/pod-runs.js';
import { listProcesses } from '../../src/devenv/processes.js';
import { vmProcesses } from '../../src/devenv/vm-processes.js';
import { containerConfig, containerLogPath } from '../../src/devenv/pods.js';
import { untilAnswered } from '../../src/devenv/retry.js';

/** Under TCG a VM boots in seconds; CRI waits are generous. */
const WAIT = { timeoutMs: 120_000 };
/** VM pods that live through a crash of kuasard. */
const SURVIVORS = 5;
/** VMs booted at once: the machine emulates them (TCG) on two shared cores. */
const BOOTS_AT_ONCE = 2;

/** A pod with a container that writes `tick <n>` every 0.2 s, and the last n into its volume (a host directory). */
interface TickingPod extends PodRun {
  volume: string;
  tickerId: string;
  tickerLog: string;
}

describe('vmm kind across restarts', () => {
  let env: Environment;
  let volumes: string;

  before(async () => {
    // A VM that cannot be reached is given up sooner than by default, and killed sooner when QEMU
    // does not quit; one that boots on a busy machine (emulated) is given longer.
    const vmm = { reconnect_timeout_ms: 3_000, stop_timeout_ms: 2_000, boot_timeout_ms: 180_000 };
    env = await startEnvironment({ kuasardConfig: renderKuasardConfigWith({ vmm }) });
    volumes = mkdtempSync(join(env.paths.dir, 'vmm-restart-'));
  });

  after(async () => {
    await env?.stop();
  });

  const handler = () => env.handlers.kuasar['vmm'] ?? '';

  const qemuProcesses = (sandboxId?: string) => vmProcesses(env.scope, sandboxId);

  const qemuPid = (podId: string): number => {
    const [qemu] = qemuProcesses(podId);
    assert.ok(qemu, `the VM of pod ${podId} runs`);
    return qemu.pid;
  };

  const kuasardPid = (): number => {
    const kuasard = listProcesses().find((p) => env.scope.daemonPids.includes(p.pid) && p.cmdline.includes('kuasard.js'));
    assert.ok(kuasard, 'kuasard runs');
    return kuasard.pid;
  };

  /** How many Task Start calls of the sandbox kuasard has answered (its debug log times each call). */
  const startsAnswered = (podId: string): number =>
    readFileSync(env.paths.kuasardLog, 'utf8')
      .split('\n')
      .filter((line) => line.includes(`"sandbox":"${podId}"`) && line.includes('"stage":"task.start"')).length;

  /** What the test compares before and after: everything the host holds, then no QEMU. */
  const snapshot = () => snapshotHost({ dirs: [env.paths.kuasarState] });
  async function assertNothingLeft(before: ReturnType<typeof snapshot>): Promise<void> {
    // After a crash of kuasard, its orphans (the VMs' QEMU) are PID 1's to reap.
    await untilInitReaped(env.scope);
    assert.deepEqual(diffHost(before, snapshot(), { scope: env.scope }), NO_LEAKS);
    assert.deepEqual(
      qemuProcesses().map((p) => p.cmdline),
      [],
      'no QEMU process is left',
    );
  }

  const withVolume = (config: ContainerConfig, hostPath: string): ContainerConfig => {
    config.mounts = [create(MountSchema, { containerPath: '/vol', hostPath })];
    return config;
  };

  const shell = (name: string, script: string): ContainerConfig =>
    containerConfig({ name, image: env.images.busybox, command: ['sh', '-c', script] });

  async function startTickingPod(name: string): Promise<TickingPod> {
    const pod = env.podConfig({ name });
    const { podSandboxId: podId } = await env.cri.runtime.runPodSandbox({ config: pod, runtimeHandler: handler() });
    const volume = join(volumes, name);
    mkdirSync(volume);
    chmodSync(volume, 0o777);
    const ticker = withVolume(
      shell(
        'ticker',
        'i=0; while true; do echo "tick $i"; echo $i > /vol/last.tmp && mv /vol/last.tmp /vol/last; i=$((i+1)); sleep 0.2; done',
      ),
      volume,
    );
    const { containerId } = await startRunning(env, { podId, pod }, ticker);
    return { podId, pod, volume, tickerId: containerId, tickerLog: containerLogPath(pod, ticker) };
  }

  async function removePod(podId: string): Promise<void> {
    await env.cri.runtime.stopPodSandbox({ podSandboxId: podId });
    await env.cri.runtime.removePodSandbox({ podSandboxId: podId });
  }

  /** The ticks in the container's CRI log, in order. */
  async function ticksLogged(pod: TickingPod): Promise<number[]> {
    const text = criLogText(await readContainerLog(pod.tickerLog), 'stdout');
    return [...text.matchAll(/^tick (\d+)$/gm)].map((match) => Number(match[1]));
  }

  /** Waits until the ticker's log shows tick `n` (a hang guard: WAIT). */
  async function untilLogged(pod: TickingPod, n: number): Promise<number[]> {
    const deadline = Date.now() + WAIT.timeoutMs;
    for (;;) {
      const ticks = await ticksLogged(pod);
      if (ticks.includes(n)) return ticks;
      assert.ok(Date.now() < deadline, `tick ${n} of ${pod.pod.metadata?.name} never reached the log (last: ${ticks.at(-1)})`);
      await sleep(100);
    }
  }

  /** The last tick the ticker wrote into its volume (read from the host, whoever runs). */
  function lastTick(pod: TickingPod): number {
    const text = existsSync(join(pod.volume, 'last')) ? readFileSync(join(pod.volume, 'last'), 'utf8').trim() : '';
    return text === '' ? -1 : Number(text);
  }

  /** Waits until `holds` says so (a hang guard: WAIT). */
  async function until(what: string, holds: () => boolean): Promise<void> {
    const deadline = Date.now() + WAIT.timeoutMs;
    while (!holds()) {
      assert.ok(Date.now() < deadline, `never: ${what}`);
      await sleep(100);
    }
  }

  const untilFile = (path: string) => until(`${path} appears`, () => existsSync(path));

  /** Makes `count` pods with `make`, BOOTS_AT_ONCE at a time. */
  async function inBatches<T>(count: number, make: (i: number) => Promise<T>): Promise<T[]> {
    const made: T[] = [];
    for (let first = 0; first < count; first += BOOTS_AT_ONCE) {
      const batch = Array.from({ length: Math.min(BOOTS_AT_ONCE, count - first) }, (_, i) => make(first + i));
      made.push(...(await Promise.all(batch)));
    }
    return made;
  }

  it(`keeps ${SURVIVORS} VM pods through a SIGKILL of kuasard: logs without a gap, the real status of an exit that came meanwhile, an ExecSync under way completed; ExecSync, stop and remove afterwards`, async () => {
    const before = snapshot();
    const pods = await inBatches(SURVIVORS, (i) => startTickingPod(`survivor-${i}`));
    const [first, second] = pods as [TickingPod, TickingPod];
    const ending = await startRunning(
      env,
      first,
      withVolume(shell('ends-while-down', 'while [ ! -e /vol/go ]; do sleep 0.1; done; echo bye; touch /vol/ended; exit 7'), first.volume),
    );
    const started = startsAnswered(second.podId);
    const spanning = env.cri.runtime.execSync({
      containerId: second.tickerId,
      cmd: ['sh', '-c', 'echo begun; while [ ! -e /vol/exec-go ]; do sleep 0.1; done; echo done; exit 3'],
      timeout: 300n,
    });
    spanning.catch(() => undefined); // asserted below
    // Its Start answered: a call the crash cuts short is answered Unavailable by the next run.
    await until('the exec is started', () => startsAnswered(second.podId) > started);
    for (const pod of pods) await untilLogged(pod, 3);

    process.kill(kuasardPid(), 'SIGKILL');
    // While kuasard is down: the containers go on writing, one exits with its own status, the exec ends.
    writeFileSync(join(first.volume, 'go'), '');
    writeFileSync(join(second.volume, 'exec-go'), '');
    await untilFile(join(first.volume, 'ended'));
    const writtenWhileDown = pods.map((pod) => lastTick(pod));
    await env.restartKuasard({ crash: true });

    for (const [i, pod] of pods.entries()) {
      const name = pod.pod.metadata?.name;
      const status = await untilAnswered(() => env.cri.runtime.podSandboxStatus({ podSandboxId: pod.podId }), WAIT.timeoutMs);
      assert.equal(status.status?.state, PodSandboxState.SANDBOX_READY, `${name} is ready`);
      assert.equal((await env.cri.runtime.containerStatus({ containerId: pod.tickerId })).status?.state, ContainerState.CONTAINER_RUNNING);
      const ticks = await untilLogged(pod, writtenWhileDown[i]! + 5);
      assert.deepEqual(
        ticks,
        ticks.map((_, n) => n),
        `${name}: every line is in the log once, in order, those written while kuasard was down (up to ${writtenWhileDown[i]}) too`,
      );
      const exec = await env.cri.runtime.execSync({
        containerId: pod.tickerId,
        cmd: ['sh', '-c', 'echo still here; exit 4'],
        timeout: 60n,
      });
      assert.equal(Buffer.from(exec.stdout).toString(), 'still here\n', `${name} serves ExecSync`);
      assert.equal(exec.exitCode, 4);
    }
    const ended = await env.cri.waitForContainerState(ending.containerId, ContainerState.CONTAINER_EXITED, WAIT);
    assert.equal(ended.exitCode, 7, 'the exit that came while kuasard was down is reported with its real status');
    assert.match(readFileSync(containerLogPath(first.pod, shell('ends-while-down', '')), 'utf8'), / stdout F bye$/m);
    const spanned = await spanning;
    assert.equal(Buffer.from(spanned.stdout).toString(), 'begun\ndone\n', 'the ExecSync under way got all of its output');
    assert.equal(spanned.exitCode, 3, 'and its real exit code');

    for (const pod of pods) {
      await env.cri.runtime.stopContainer({ containerId: pod.tickerId, timeout: 2n });
      const stopped = await env.cri.waitForContainerState(pod.tickerId, ContainerState.CONTAINER_EXITED, WAIT);
      // The shell is its PID namespace's init: SIGTERM without a handler does not end it, SIGKILL does.
      assert.equal(stopped.exitCode, 137, `${pod.pod.metadata?.name}'s container is stopped`);
      await env.cri.runtime.removeContainer({ containerId: pod.tickerId });
    }
    await env.cri.runtime.removeContainer({ containerId: ending.containerId });
    for (const pod of pods) await removePod(pod.podId);
    await assertNothingLeft(before);
  });

  it('ends a VM that cannot be reached after the restart (its QEMU killed, or stopped, while kuasard was down): the pod is not ready, its container exited (255), and removing it leaves nothing', async () => {
    const before = snapshot();
    const [killed, stopped] = await inBatches(2, async (i) => {
      const pod = env.podConfig({ name: ['qemu-killed', 'qemu-stopped'][i]! });
      const { podSandboxId: podId } = await env.cri.runtime.runPodSandbox({ config: pod, runtimeHandler: handler() });
      const { containerId } = await startRunning(env, { podId, pod }, shell('idle', 'sleep 3600'));
      return { podId, containerId };
    });

    process.kill(kuasardPid(), 'SIGKILL');
    process.kill(qemuPid(killed!.podId), 'SIGKILL');
    // Alive but silent: its agent cannot answer within reconnect_timeout_ms.
    process.kill(qemuPid(stopped!.podId), 'SIGSTOP');
    await env.restartKuasard({ crash: true });

    for (const { podId, containerId } of [killed!, stopped!]) {
      const status = await untilAnswered(() => env.cri.runtime.podSandboxStatus({ podSandboxId: podId }), WAIT.timeoutMs);
      assert.equal(status.status?.state, PodSandboxState.SANDBOX_NOTREADY, `pod ${podId} is not ready`);
      const exited = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
      assert.equal(exited.exitCode, 255, 'its container is reported ended, its status unknown');
      await env.cri.runtime.removeContainer({ containerId });
      await removePod(podId);
    }
    await assertNothingLeft(before);
  });

  it('keeps a VM pod through a restart of containerd: the pod and its container as they were, the log going on, ExecSync and stop', async () => {
    const before = snapshot();
    const pod = await startTickingPod('containerd-restart');
    await untilLogged(pod, 3);
    const vm = qemuPid(pod.podId);

    await env.restartContainerd();

    const status = await untilAnswered(() => env.cri.runtime.podSandboxStatus({ podSandboxId: pod.podId }), WAIT.timeoutMs);
    assert.equal(status.status?.state, PodSandboxState.SANDBOX_READY);
    assert.equal((await env.cri.runtime.containerStatus({ containerId: pod.tickerId })).status?.state, ContainerState.CONTAINER_RUNNING);
    assert.equal(qemuPid(pod.podId), vm, 'the same VM runs');
    const ticks = await untilLogged(pod, lastTick(pod) + 5);
    assert.deepEqual(
      ticks,
      ticks.map((_, n) => n),
      'every line is in the log once, in order',
    );
    const exec = await env.cri.runtime.execSync({ containerId: pod.tickerId, cmd: ['echo', 'after containerd'], timeout: 60n });
    assert.equal(Buffer.from(exec.stdout).toString(), 'after containerd\n');

    await env.cri.runtime.stopContainer({ containerId: pod.tickerId, timeout: 2n });
    assert.equal((await env.cri.waitForContainerState(pod.tickerId, ContainerState.CONTAINER_EXITED, WAIT)).exitCode, 137);
    await env.cri.runtime.removeContainer({ containerId: pod.tickerId });
    await removePod(pod.podId);
    await assertNothingLeft(before);
  });
});
