// kuasard restarts (killed with SIGKILL, or stopped with SIGTERM) while pods run. Their
// containers keep running, the restarted daemon takes them over from its state files and its fd
// keeper (which held the task connections containerd keeps open, and their pending Waits), and
// they stay manageable; a container that ended while the daemon was down is reported exited.
// This holds under load (many pods starting at once, each with a PID-namespace holder and its
// SIGCHLDs) and when a client holds thousands of Waits open. The keeper goes away by itself
// once it holds nothing and kuasard is gone.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Task } from '../../src/api/containerd/runtime/task/v3/shim_pb.js';
import { Status } from '../../src/api/containerd/types/task/task_pb.js';
import { NamespaceMode, PodSandboxState, type PodSandboxConfig } from '../../src/api/cri/runtime/v1/api_pb.js';
import { ContainerState } from '../../src/cri/client.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { diffHost, NO_LEAKS, snapshotHost, untilInitReaped } from '../../src/devenv/leaks.js';
import { containerConfig } from '../../src/devenv/pods.js';
import { fdKeeperPids, listProcesses } from '../../src/devenv/processes.js';
import { untilAnswered } from '../../src/devenv/retry.js';
import { MAX_KEPT_CALLS_PER_CONNECTION } from '../../src/daemon/kept-task-sockets.js';
import { closeKept, FdKeeper } from '../../src/linux/fd-keeper.js';
import { readProcStat } from '../../src/linux/proc.js';
import { TtrpcClient } from '../../src/rpc/ttrpc/client.js';
import { typedClient } from '../../src/rpc/ttrpc/typed.js';

const PODS = 10;
/** Pods started at once, each with its own PID namespace holder (catatonit). */
const LOAD_PODS = 50;
/** Task.Wait calls one client holds open on a sandbox's task socket. */
const HELD_WAITS = 3_000;
/** How long containerd waits for a container to end at SIGTERM when many stop at once. */
const LOADED_STOP_TIMEOUT_S = 30n;
const WAIT = { timeoutMs: 30_000 };
/** How long PID 1 may take to reap an orphan (some inits poll, about once a second). */
const REAP_WAIT_MS = 5_000;
/** A hang guard only: kuasard's shutdown takes a few seconds at most. */
const EXIT_HANG_GUARD_MS = 60_000;

/** The fd keeper kuasard started for this environment (its command line names the state dir). */
const keeperPids = (env: Environment): number[] => fdKeeperPids(env.paths.kuasarState);

interface RunningPod {
  podSandboxId: string;
  pod: PodSandboxConfig;
  containerId: string;
  pid: number;
}

describe('runc kind across a kuasard restart', () => {
  let env: Environment;

  before(async () => {
    env = await startEnvironment();
  });

  after(async () => {
    await env?.stop();
  });

  async function runPod(name: string, command: string[], options: { sharedPid?: boolean } = {}): Promise<RunningPod> {
    const pod = env.podConfig({ name });
    const namespaces = pod.linux?.securityContext?.namespaceOptions;
    if (options.sharedPid && namespaces) namespaces.pid = NamespaceMode.POD;
    const { podSandboxId } = await env.cri.runtime.runPodSandbox({ config: pod, runtimeHandler: env.handlers.kuasar['runc'] });
    const config = containerConfig({ name: 'main', image: env.images.busybox, command });
    const { containerId } = await env.cri.runtime.createContainer({ podSandboxId, config, sandboxConfig: pod });
    await env.cri.runtime.startContainer({ containerId });
    const status = await env.cri.runtime.containerStatus({ containerId, verbose: true });
    const pid = (JSON.parse(status.info['info'] ?? '{}') as { pid?: number }).pid ?? 0;
    assert.ok(pid > 0);
    return { podSandboxId, pod, containerId, pid };
  }

  const watched = () => [env.paths.kuasarState, `${env.paths.kuasarState}/runc.oci`];
  const taskSocketOf = (p: RunningPod) => join(env.paths.kuasarState, 'runc', p.podSandboxId, 'task.sock');

  /** The names kuasard's fd keeper holds now (listed by a client of its own). */
  async function keptNames(): Promise<string[]> {
    const { keeper, kept } = await FdKeeper.open({ socketPath: join(env.paths.kuasarState, 'fd-keeper.sock') });
    keeper.close();
    closeKept(kept);
    return kept.map((k) => k.name);
  }

  /** Lines of kuasard's log (all its runs in this environment) with this message. */
  const logLines = (message: string) =>
    readFileSync(env.paths.kuasardLog, 'utf8')
      .split('\n')
      .filter((line) => line.includes(`"msg":"${message}`));

  /** Runs `task` over `items`, `width` at a time. */
  async function inBatches<T>(items: readonly T[], width: number, task: (item: T) => Promise<void>): Promise<void> {
    for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(task));
  }

  it(`keeps ${PODS} running pods manageable after kuasard is killed with SIGKILL and restarted`, async () => {
    const beforeAll = snapshotHost({ dirs: watched() });
    const pods: RunningPod[] = [];
    for (let i = 0; i < PODS; i++) pods.push(await runPod(`survivor-${i}`, ['sleep', '3600']));
    const shortLived = await runPod('ends-while-down', ['sh', '-c', 'sleep 2; exit 5']);
    const startTimes = new Map(pods.map((p) => [p.pid, readProcStat(p.pid)?.startTime]));
    const keepers = keeperPids(env);
    assert.equal(keepers.length, 1, 'kuasard runs one fd keeper');

    await env.restartKuasard({ crash: true });
    assert.deepEqual(keeperPids(env), keepers, 'the keeper outlived kuasard and serves the new one');

    // The short-lived container ends on its own; wait until it is gone from the host.
    while (readProcStat(shortLived.pid) && readProcStat(shortLived.pid)?.state !== 'Z') await sleep(100);

    for (const p of pods) {
      assert.equal(readProcStat(p.pid)?.startTime, startTimes.get(p.pid), `container of ${p.pod.metadata?.name} kept running`);
      const status = await env.cri.runtime.containerStatus({ containerId: p.containerId });
      assert.equal(status.status?.state, ContainerState.CONTAINER_RUNNING);
      const name = p.pod.metadata?.name ?? '';
      const exec = await env.cri.runtime.execSync({
        containerId: p.containerId,
        cmd: ['sh', '-c', `echo alive in ${name}; exit 4`],
        timeout: 10n,
      });
      assert.equal(new TextDecoder().decode(exec.stdout), `alive in ${name}\n`, 'exec still works after the restart');
      assert.equal(exec.exitCode, 4);
    }
    const ended = await env.cri.waitForContainerState(shortLived.containerId, ContainerState.CONTAINER_EXITED, WAIT);
    assert.equal(ended.exitCode, 255, 'an exit the daemon could not see is reported as 255');

    for (const p of pods) await stopContainer(p, startTimes.get(p.pid));
    for (const p of [...pods, shortLived]) await removePod(p);
    assert.deepEqual(diffHost(beforeAll, snapshotHost({ dirs: watched() }), { scope: env.scope }), NO_LEAKS);
  });

  it('keeps a running pod manageable across a graceful restart (SIGTERM)', async () => {
    const beforeAll = snapshotHost({ dirs: watched() });
    const p = await runPod('graceful', ['sleep', '3600']);
    const startTime = readProcStat(p.pid)?.startTime;
    const keepers = keeperPids(env);

    await env.restartKuasard();
    assert.deepEqual(keeperPids(env), keepers, "the keeper holds the pod's sockets through the restart");
    assert.equal(readProcStat(p.pid)?.startTime, startTime);
    assert.equal((await env.cri.runtime.containerStatus({ containerId: p.containerId })).status?.state, ContainerState.CONTAINER_RUNNING);

    await stopContainer(p, startTime);
    await removePod(p);
    assert.deepEqual(diffHost(beforeAll, snapshotHost({ dirs: watched() }), { scope: env.scope }), NO_LEAKS);
  });

  it('ends kuasard on SIGTERM while containerd holds its calls open; the pod runs on and is managed by the next run', async () => {
    const beforeAll = snapshotHost({ dirs: watched() });
    const p = await runPod('sigterm', ['sleep', '3600']);
    const startTime = readProcStat(p.pid)?.startTime;
    // containerd holds a Controller/Wait for the pod and a Task/Wait for its container.
    const kuasard = listProcesses().find((k) => env.scope.daemonPids.includes(k.pid) && k.cmdline.includes('kuasard.js'));
    assert.ok(kuasard, 'kuasard runs');
    process.kill(kuasard.pid, 'SIGTERM');
    const deadline = Date.now() + EXIT_HANG_GUARD_MS;
    while (readProcStat(kuasard.pid)?.startTime === kuasard.startTime && Date.now() < deadline) await sleep(100);
    assert.notEqual(readProcStat(kuasard.pid)?.startTime, kuasard.startTime, 'kuasard exited after SIGTERM');
    assert.match(env.logs(5).kuasard, /"msg":"kuasard stopped"/, 'it ended by its own shutdown, not by a backstop');

    await env.restartKuasard();
    assert.equal(readProcStat(p.pid)?.startTime, startTime, 'the container kept running');
    assert.equal((await env.cri.runtime.containerStatus({ containerId: p.containerId })).status?.state, ContainerState.CONTAINER_RUNNING);
    await stopContainer(p, startTime);
    await removePod(p);
    assert.deepEqual(diffHost(beforeAll, snapshotHost({ dirs: watched() }), { scope: env.scope }), NO_LEAKS);
  });

  it(`keeps the fd keeper through ${LOAD_PODS} pods starting at once (shared PID namespaces), and all of them across a SIGKILL of kuasard`, async () => {
    const beforeAll = snapshotHost({ dirs: watched() });
    const lostBefore = logLines('lost the fd keeper').length;
    const names = Array.from({ length: LOAD_PODS }, (_, i) => `load-${i}`);
    const pods = await Promise.all(names.map((name) => runPod(name, ['sleep', '3600'], { sharedPid: true })));
    assert.equal(logLines('lost the fd keeper').length, lostBefore, 'the keeper was never lost while the pods started');
    const startTimes = new Map(pods.map((p) => [p.pid, readProcStat(p.pid)?.startTime]));
    const listeners = (await keptNames()).filter((n) => pods.some((p) => n === `listen ${taskSocketOf(p)}`));
    assert.equal(listeners.length, LOAD_PODS, 'the keeper holds every task socket');

    const takenOverBefore = logLines('task socket taken over').length;
    await env.restartKuasard({ crash: true });
    assert.ok(logLines('task socket taken over').length - takenOverBefore >= LOAD_PODS, 'every task socket was taken over');
    await inBatches(pods, 10, async (p) => {
      assert.equal(readProcStat(p.pid)?.startTime, startTimes.get(p.pid), `container of ${p.pod.metadata?.name} kept running`);
      assert.equal(
        (await untilAnswered(() => env.cri.runtime.podSandboxStatus({ podSandboxId: p.podSandboxId }))).status?.state,
        PodSandboxState.SANDBOX_READY,
        'the pod is ready',
      );
      const exec = await env.cri.runtime.execSync({ containerId: p.containerId, cmd: ['sh', '-c', 'echo alive'], timeout: 30n });
      assert.equal(new TextDecoder().decode(exec.stdout), 'alive\n');
    });
    await inBatches(pods, 10, async (p) => {
      await stopContainer(p, startTimes.get(p.pid), LOADED_STOP_TIMEOUT_S);
      await removePod(p);
    });
    const left = (await keptNames()).filter((n) => pods.some((p) => n.includes(` ${taskSocketOf(p)}`)));
    assert.deepEqual(left, [], 'the keeper holds nothing of the removed pods');
    await untilInitReaped(env.scope, { before: beforeAll });
    assert.deepEqual(diffHost(beforeAll, snapshotHost({ dirs: watched() }), { scope: env.scope }), NO_LEAKS);
  });

  it(`serves every pod after a restart while a client holds ${HELD_WAITS} Waits open on a task socket; ${MAX_KEPT_CALLS_PER_CONNECTION} of them are kept and answered`, async () => {
    const beforeAll = snapshotHost({ dirs: watched() });
    const pods = await Promise.all(['waited-on', 'neighbour-1', 'neighbour-2'].map((name) => runPod(name, ['sleep', '3600'])));
    const [target] = pods;
    const startTimes = new Map(pods.map((p) => [p.pid, readProcStat(p.pid)?.startTime]));
    const client = await TtrpcClient.connect(taskSocketOf(target!), { timeoutMs: 10_000 });
    try {
      const task = typedClient(client, Task);
      let answered = 0;
      const waits = Array.from({ length: HELD_WAITS }, () =>
        task.wait({ id: target!.containerId }).then(
          () => void answered++,
          () => undefined,
        ),
      );
      // Every Wait is pending in kuasard once a call made after them is answered (one connection, in order).
      assert.equal((await task.state({ id: target!.containerId })).status, Status.RUNNING);
      const calls = (await keptNames()).filter((n) => n.startsWith(`call ${taskSocketOf(target!)} `)).length;
      assert.ok(calls >= MAX_KEPT_CALLS_PER_CONNECTION && calls < HELD_WAITS, `the keeper holds a bounded number of calls (${calls})`);

      await env.restartKuasard({ crash: true });
      for (const p of pods) {
        assert.equal(readProcStat(p.pid)?.startTime, startTimes.get(p.pid));
        assert.equal(
          (await untilAnswered(() => env.cri.runtime.podSandboxStatus({ podSandboxId: p.podSandboxId }))).status?.state,
          PodSandboxState.SANDBOX_READY,
          'the pod is ready',
        );
        const fresh = await TtrpcClient.connect(taskSocketOf(p), { timeoutMs: 10_000 });
        try {
          assert.equal(
            (await typedClient(fresh, Task).state({ id: p.containerId })).status,
            Status.RUNNING,
            'its task socket answers State',
          );
        } finally {
          fresh.close();
        }
        const exec = await env.cri.runtime.execSync({ containerId: p.containerId, cmd: ['true'], timeout: 30n });
        assert.equal(exec.exitCode, 0);
      }
      assert.equal((await task.state({ id: target!.containerId })).status, Status.RUNNING, 'the holding connection is served too');

      await stopContainer(target!, startTimes.get(target!.pid));
      for (const deadline = Date.now() + 30_000; answered < MAX_KEPT_CALLS_PER_CONNECTION && Date.now() < deadline; ) await sleep(50);
      assert.equal(
        answered,
        MAX_KEPT_CALLS_PER_CONNECTION,
        'the kept Waits were answered by the next run, the others were lost with the crash',
      );
      client.close();
      await Promise.all(waits);
    } finally {
      client.close();
    }
    for (const p of pods.slice(1)) await stopContainer(p, startTimes.get(p.pid));
    for (const p of pods) await removePod(p);
    assert.deepEqual(diffHost(beforeAll, snapshotHost({ dirs: watched() }), { scope: env.scope }), NO_LEAKS);
  });

  it('replaces a keeper killed while kuasard runs, so that the pods still survive a crash of kuasard', async () => {
    const beforeAll = snapshotHost({ dirs: watched() });
    const pods = await Promise.all(['keeper-killed-1', 'keeper-killed-2'].map((name) => runPod(name, ['sleep', '3600'])));
    const startTimes = new Map(pods.map((p) => [p.pid, readProcStat(p.pid)?.startTime]));
    const replacedBefore = logLines('fd keeper replaced').length;
    const [killed, ...others] = keeperPids(env);
    assert.ok(killed !== undefined && others.length === 0, 'one keeper runs');
    process.kill(killed, 'SIGKILL');

    const replaced = () => logLines('fd keeper replaced').length > replacedBefore;
    for (const deadline = Date.now() + 30_000; !replaced() && Date.now() < deadline; ) await sleep(100);
    assert.ok(replaced(), 'kuasard noticed the loss and replaced the keeper');
    const [replacement] = keeperPids(env);
    assert.ok(replacement !== undefined && replacement !== killed, 'another keeper runs');
    const listeners = pods.map((p) => `listen ${taskSocketOf(p)}`);
    const held = await keptNames();
    assert.ok(
      listeners.every((n) => held.includes(n)),
      'and gave it the task sockets',
    );

    await env.restartKuasard({ crash: true });
    for (const p of pods) {
      assert.equal(readProcStat(p.pid)?.startTime, startTimes.get(p.pid));
      const exec = await env.cri.runtime.execSync({ containerId: p.containerId, cmd: ['true'], timeout: 30n });
      assert.equal(exec.exitCode, 0, 'the pod is manageable after the crash');
    }
    for (const p of pods) await stopContainer(p, startTimes.get(p.pid));
    for (const p of pods) await removePod(p);
    // The replacement keeper is kuasard's keeper from now on, not a leftover of the pods.
    assert.deepEqual(diffHost(beforeAll, snapshotHost({ dirs: watched() }), { scope: env.scope, ignorePids: [replacement] }), NO_LEAKS);
  });

  it('leaves no fd keeper: it exits once it holds nothing and kuasard is gone', async () => {
    const [keeper] = keeperPids(env);
    assert.ok(keeper, 'a keeper runs');
    // Every pod is gone, so the keeper holds nothing and quits with the kuasard it served.
    await env.restartKuasard();
    const [next, ...more] = keeperPids(env);
    assert.ok(next !== undefined && next !== keeper && more.length === 0, 'the new kuasard started a new keeper');

    await env.stop();
    assert.deepEqual(keeperPids(env), [], 'no fd keeper is left once the environment is stopped');
  });

  /**
   * Stops the container through CRI: it must be reported exited, and its process must end. Its
   * process ends at SIGTERM; `timeoutSecs` is how long containerd waits for that before it kills
   * (on a loaded machine, seeing the exit through may take longer than the default).
   */
  async function stopContainer(p: RunningPod, startTime: string | undefined, timeoutSecs = 2n): Promise<void> {
    await env.cri.runtime.stopContainer({ containerId: p.containerId, timeout: timeoutSecs });
    const status = await env.cri.waitForContainerState(p.containerId, ContainerState.CONTAINER_EXITED, WAIT);
    assert.notEqual(status.exitCode, 0);
    // Since kuasard restarted, the container process is PID 1's child, not kuasard's: it ended,
    // and PID 1 reaps it, which may take a moment.
    const deadline = Date.now() + REAP_WAIT_MS;
    while (readProcStat(p.pid)?.startTime === startTime && Date.now() < deadline) await sleep(50);
    const left = readProcStat(p.pid);
    assert.notEqual(left?.startTime, startTime, `the container process is gone (state ${left?.state})`);
  }

  async function removePod(p: RunningPod): Promise<void> {
    await env.cri.runtime.stopPodSandbox({ podSandboxId: p.podSandboxId });
    await env.cri.runtime.removePodSandbox({ podSandboxId: p.podSandboxId });
    assert.equal(existsSync(join(env.paths.kuasarState, 'runc', p.podSandboxId)), false);
  }
});
