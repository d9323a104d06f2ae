// Crash consistency: kuasard is killed with SIGKILL at random moments inside the CRI calls that
// drive a pod's life (RunPodSandbox: Controller Create and Start; CreateContainer: Controller
// Status and Platform; StartContainer: Task Create and Start; StopPodSandbox: Task Kill and
// Controller Stop; RemovePodSandbox: Task Delete and Controller Shutdown) and restarted each
// time. Afterwards every pod CRI still lists must be usable (a ready pod runs a new container) or
// cleanly removable, a new pod must run, and once every pod is removed nothing of them may remain
// on the host. The randomness is seeded: CRASH_SEED=<n> replays a run (CRASH_KILLS=<n> tries
// more or fewer).
// Also: a state file that is corrupt, and containers that runc no longer has.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { NamespaceMode, PodSandboxState, type PodSandboxConfig } from '../../src/api/cri/runtime/v1/api_pb.js';
import { ContainerState } from '../../src/cri/client.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { diffHost, NO_LEAKS, snapshotHost, type HostDiff, type HostSnapshot } from '../../src/devenv/leaks.js';
import { containerConfig } from '../../src/devenv/pods.js';
import { runcKindRuntimeCommand } from '../../src/devenv/oci-runtime.js';
import { fdKeeperPids } from '../../src/devenv/processes.js';
import { eventually, untilAnswered } from '../../src/devenv/retry.js';
import { Controller } from '../../src/api/containerd/services/sandbox/v1/sandbox_pb.js';
import { Code, RuntimeError } from '../../src/base/errors.js';
import { GrpcChannel } from '../../src/rpc/grpc.js';

const execFileAsync = promisify(execFile);
const STAGES = ['run', 'create', 'start', 'stop', 'remove'] as const;
type Stage = (typeof STAGES)[number];
const KILLS = Number(process.env['CRASH_KILLS'] ?? 20);
const SEED = Number(process.env['CRASH_SEED'] ?? Math.floor(Math.random() * 2 ** 31));
/** Hang guard for a CRI call whose kuasard died under it (kubelet's own is 2 minutes). */
const CALL_TIMEOUT_MS = 30_000;
const WAIT = { timeoutMs: 30_000 };
/** How long PID 1 may take to reap an orphan (some inits poll, about once a second). */
const REAP_WAIT_MS = 5_000;

/** A small seeded generator (mulberry32): the same seed gives the same delays and pod shapes. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

interface Kill {
  round: number;
  stage: Stage;
  delayMs: number;
  sharedPid: boolean;
  /** The last stage record the killed kuasard wrote before it died (or '-' when none since the call). */
  lastStage: string;
  /** How the interrupted CRI call ended: 'ok' or the status code it failed with. */
  outcome: string;
}

describe('runc kind: kuasard killed inside pod calls', () => {
  let env: Environment;
  const random = seededRandom(SEED);
  let failed = false;

  before(async () => {
    console.log(`crash test seed: CRASH_SEED=${SEED} (kills: ${KILLS})`);
    env = await startEnvironment();
  });

  after(async () => {
    // The environment's directory goes with it: a failed run keeps the daemons' logs to read.
    if (failed && env) {
      const kept = mkdtempSync(join(tmpdir(), 'kuasar-crash-logs-'));
      copyFileSync(env.paths.kuasardLog, join(kept, 'kuasard.log'));
      copyFileSync(env.paths.containerdLog, join(kept, 'containerd.log'));
      console.log(`daemon logs of the failed run kept in ${kept}`);
    }
    await env?.stop();
  });

  const watched = () => [env.paths.kuasarState, `${env.paths.kuasarState}/runc.oci`];

  function podConfig(name: string, sharedPid: boolean): PodSandboxConfig {
    const pod = env.podConfig({ name });
    // Half of the pods share one PID namespace: their holder process must be found again too.
    if (sharedPid) pod.linux!.securityContext!.namespaceOptions!.pid = NamespaceMode.POD;
    return pod;
  }

  const busybox = (name = 'main') => containerConfig({ name, image: env.images.busybox, command: ['sleep', '3600'] });

  /** Brings a fresh pod to where `stage` starts and returns the CRI call that performs it. */
  async function prepare(stage: Stage, pod: PodSandboxConfig): Promise<() => Promise<unknown>> {
    const runtime = env.cri.runtime;
    const options = { timeoutMs: CALL_TIMEOUT_MS };
    const handler = env.handlers.kuasar['runc'];
    if (stage === 'run') return () => runtime.runPodSandbox({ config: pod, runtimeHandler: handler }, options);
    const { podSandboxId } = await runtime.runPodSandbox({ config: pod, runtimeHandler: handler });
    if (stage === 'create') return () => runtime.createContainer({ podSandboxId, config: busybox(), sandboxConfig: pod }, options);
    const { containerId } = await runtime.createContainer({ podSandboxId, config: busybox(), sandboxConfig: pod });
    if (stage === 'start') return () => runtime.startContainer({ containerId }, options);
    await runtime.startContainer({ containerId });
    if (stage === 'stop') return () => runtime.stopPodSandbox({ podSandboxId }, options);
    await runtime.stopPodSandbox({ podSandboxId });
    return () => runtime.removePodSandbox({ podSandboxId }, options);
  }

  /**
   * When kuasard works inside each call, as offsets from the call's start, measured once with
   * nothing killed: most of a CRI call is containerd's own work (CNI, snapshots), so the random
   * delays are drawn from kuasard's part of it, where the kills matter.
   */
  async function measureCalls(): Promise<Record<Stage, { from: number; to: number }>> {
    const windows = {} as Record<Stage, { from: number; to: number }>;
    for (const stage of STAGES) {
      const call = await prepare(stage, podConfig(`measure-${stage}`, true));
      const offset = statSync(env.paths.kuasardLog).size;
      const started = Date.now();
      await call();
      const spans = stageRecords(kuasardPid(), offset, started).filter((r) => /^(controller|task)\./.test(r.stage));
      assert.ok(spans.length > 0, `${stage}: kuasard logged the calls it served`);
      const from = Math.min(...spans.map((r) => r.end - r.ms)) - started;
      const to = Math.max(...spans.map((r) => r.end)) - started;
      windows[stage] = { from: Math.max(0, from), to: Math.max(from, to) };
      await removeEveryPod();
    }
    return windows;
  }

  /**
   * The stage records (name, duration, end time) the kuasard with `pid` wrote after `offset` of
   * its log that ended at `since` or later (kuasard writes its log asynchronously: a record may
   * reach the file after a later call began).
   */
  function stageRecords(pid: number, offset: number, since = 0): { stage: string; ms: number; end: number }[] {
    const text = readFileSync(env.paths.kuasardLog).subarray(offset).toString('utf8');
    const records = [];
    for (const line of text.split('\n')) {
      if (!line.includes('"stage"')) continue;
      try {
        const record = JSON.parse(line) as { pid?: number; stage?: string; msg?: string; ms?: number; time?: string };
        const end = Date.parse(record.time ?? '');
        if (record.pid === pid && record.msg === 'stage' && record.stage && end >= since)
          records.push({ stage: record.stage, ms: record.ms ?? 0, end });
      } catch {
        // A line the kill cut short.
      }
    }
    return records;
  }

  function kuasardPid(): number {
    const log = readFileSync(env.paths.kuasardLog, 'utf8').trimEnd().split('\n');
    const record = JSON.parse(log[log.length - 1]!) as { pid: number };
    return record.pid;
  }

  /** Every pod CRI lists: a ready one must run a new container; each must then stop and be removed. */
  async function checkAndRemovePods(): Promise<void> {
    const { items } = await untilAnswered(() => env.cri.runtime.listPodSandbox({}), 30_000);
    for (const pod of items) {
      const { status } = await untilAnswered(() => env.cri.runtime.podSandboxStatus({ podSandboxId: pod.id }), 30_000);
      if (status?.state === PodSandboxState.SANDBOX_READY) {
        const { containerId } = await untilAnswered(
          () => env.cri.runtime.createContainer({ podSandboxId: pod.id, config: busybox('probe'), sandboxConfig: podConfigOf(pod.id) }),
          30_000,
        );
        await untilAnswered(() => env.cri.runtime.startContainer({ containerId }), 30_000);
        await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_RUNNING, WAIT);
      }
    }
    await removeEveryPod();
  }

  const configs = new Map<string, PodSandboxConfig>();
  const podConfigOf = (id: string): PodSandboxConfig => {
    const config = configs.get(id);
    assert.ok(config, `pod ${id} was made by this test`);
    return config;
  };

  async function removeEveryPod(): Promise<void> {
    const { items } = await untilAnswered(() => env.cri.runtime.listPodSandbox({}), 30_000);
    for (const pod of items) {
      await untilAnswered(() => env.cri.runtime.stopPodSandbox({ podSandboxId: pod.id }), 30_000);
      await untilAnswered(() => env.cri.runtime.removePodSandbox({ podSandboxId: pod.id }), 30_000);
    }
  }

  /**
   * kuasard's fd keeper: part of the daemon, not of a pod. One that held nothing ends with the
   * kuasard it served, and the next kuasard starts another (runc-restart.test.ts tests that).
   */
  const keeperPids = () => fdKeeperPids(env.paths.kuasarState);

  /**
   * What the round left on the host. A process kuasard started before it was killed (a PID
   * namespace holder) is PID 1's child afterwards: killed at Shutdown, it stays a zombie until
   * PID 1 reaps it, which some inits do only now and then. Zombies alone are waited out.
   */
  async function leaksSince(before: HostSnapshot): Promise<HostDiff> {
    const deadline = Date.now() + REAP_WAIT_MS;
    for (;;) {
      const leaks = diffHost(before, snapshotHost({ dirs: watched() }), { scope: env.scope, ignorePids: keeperPids() });
      const onlyZombies = leaks.processes.length > 0 && leaks.processes.every((p) => p.includes(', zombie)'));
      const others = { ...leaks, processes: [] };
      if (!onlyZombies || Date.now() > deadline || JSON.stringify(others) !== JSON.stringify(NO_LEAKS)) return leaks;
      await sleep(100);
    }
  }

  it('serves the other pods when a state file is corrupt, reports that pod not ready with the reason, and removes it whole', async () => {
    try {
      await corruptStateFile();
    } catch (err) {
      failed = true;
      throw err;
    }
  });

  async function corruptStateFile(): Promise<void> {
    const before = snapshotHost({ dirs: watched() });
    const runtime = env.cri.runtime;
    const started = [];
    for (const [name, sharedPid] of [
      ['healthy', false],
      ['corrupt', true],
    ] as const) {
      const pod = podConfig(name, sharedPid);
      const { podSandboxId } = await runtime.runPodSandbox({ config: pod, runtimeHandler: env.handlers.kuasar['runc'] });
      const { containerId } = await runtime.createContainer({ podSandboxId, config: busybox(), sandboxConfig: pod });
      await runtime.startContainer({ containerId });
      started.push({ podSandboxId, containerId });
    }
    const [healthy, corrupt] = started as [(typeof started)[0], (typeof started)[0]];
    const podDir = join(env.paths.kuasarState, 'runc', corrupt.podSandboxId);
    const stateFile = join(podDir, 'state.json');
    // kuasard records a start once its answer is out (Container.start), in the container's own
    // record; the test waits for it so that the pod's record is torn after every save of the start.
    await eventually(
      async () => {
        const record = JSON.parse(readFileSync(join(podDir, 'state.containers', `${corrupt.containerId}.json`), 'utf8')) as {
          status: string;
        };
        assert.equal(record.status, 'running');
      },
      10_000,
      50,
    );
    // Torn by something outside kuasard (a disk fault, a hand edit): kuasard reads it at its next start.
    writeFileSync(stateFile, '{"id": "torn');
    await env.restartKuasard({ crash: true });

    const exec = await untilAnswered(
      () => runtime.execSync({ containerId: healthy.containerId, cmd: ['echo', 'still here'], timeout: 10n }),
      30_000,
    );
    assert.equal(new TextDecoder().decode(exec.stdout), 'still here\n', 'the healthy pod is served after the restart');

    const channel = new GrpcChannel(`unix://${env.kuasarSockets['runc']}`, { timeoutMs: 30_000 });
    try {
      const controller = channel.client(Controller);
      const status = await controller.status({ sandboxId: corrupt.podSandboxId, verbose: true });
      assert.equal(status.state, 'SANDBOX_NOTREADY');
      assert.match(status.info['reason'] ?? '', /state of sandbox \w+ is unusable: not JSON/);
      assert.equal((await controller.wait({ sandboxId: corrupt.podSandboxId })).exitStatus, 255, 'Wait is answered');
      assert.equal((await controller.status({ sandboxId: healthy.podSandboxId })).state, 'SANDBOX_READY');
    } finally {
      channel.close();
    }

    // Removing it releases what kuasard could no longer read about: its container (runc state,
    // cgroups, rootfs mount), the holder of its PID namespace, its pinned namespaces, its files.
    for (const { podSandboxId } of [corrupt, healthy]) {
      await untilAnswered(() => runtime.podSandboxStatus({ podSandboxId }), 30_000);
      await untilAnswered(() => runtime.stopPodSandbox({ podSandboxId }), 30_000);
      await untilAnswered(() => runtime.removePodSandbox({ podSandboxId }), 30_000);
    }
    assert.deepEqual(await leaksSince(before), NO_LEAKS);
    const told = readFileSync(env.paths.kuasardLog, 'utf8')
      .split('\n')
      .filter((line) => line.includes(corrupt.podSandboxId));
    for (const what of [
      'deleting a container the state file did not record',
      'stopped a PID namespace holder the state file did not record',
    ]) {
      assert.ok(
        told.some((line) => line.includes(what)),
        `kuasard's log says: ${what}`,
      );
    }
  }

  it('releases a pod whose Start was answered but not yet recorded when kuasard died, and CRI still removes it', async () => {
    try {
      await startAnsweredNotSaved();
    } catch (err) {
      failed = true;
      throw err;
    }
  });

  /**
   * kuasard records a started sandbox just after its answer (Sandboxer.start): killed in between,
   * its state file still says 'created'. The random kills reach that moment only by chance; the
   * file is put back to that state here instead.
   */
  async function startAnsweredNotSaved(): Promise<void> {
    const before = snapshotHost({ dirs: watched() });
    const runtime = env.cri.runtime;
    const pod = podConfig('answered', true);
    const { podSandboxId } = await runtime.runPodSandbox({ config: pod, runtimeHandler: env.handlers.kuasar['runc'] });
    const stateFile = join(env.paths.kuasarState, 'runc', podSandboxId, 'state.json');
    let record: Record<string, unknown> = {};
    await eventually(
      async () => {
        record = JSON.parse(readFileSync(stateFile, 'utf8')) as Record<string, unknown>;
        assert.equal(record['phase'], 'ready');
      },
      10_000,
      50,
    );
    writeFileSync(stateFile, JSON.stringify({ ...record, phase: 'created' }));
    await env.restartKuasard({ crash: true });

    const { status } = await untilAnswered(() => runtime.podSandboxStatus({ podSandboxId }), 30_000);
    assert.equal(status?.state, PodSandboxState.SANDBOX_NOTREADY, 'a pod kuasard released is not ready');
    await untilAnswered(() => runtime.stopPodSandbox({ podSandboxId }), 30_000);
    await untilAnswered(() => runtime.removePodSandbox({ podSandboxId }), 30_000);
    assert.equal((await runtime.listPodSandbox({})).items.length, 0);
    assert.deepEqual(await leaksSince(before), NO_LEAKS);
    assert.ok(
      readFileSync(env.paths.kuasardLog, 'utf8')
        .split('\n')
        .some((line) => line.includes(podSandboxId) && line.includes('it never started')),
      "kuasard's log says why it released the pod",
    );
  }

  it('reports a container runc lost while kuasard was down exited, and removes its pod', async () => {
    try {
      await lostContainer();
    } catch (err) {
      failed = true;
      throw err;
    }
  });

  async function lostContainer(): Promise<void> {
    const before = snapshotHost({ dirs: watched() });
    const runtime = env.cri.runtime;
    const pod = podConfig('lost', false);
    const { podSandboxId } = await runtime.runPodSandbox({ config: pod, runtimeHandler: env.handlers.kuasar['runc'] });
    const { containerId } = await runtime.createContainer({ podSandboxId, config: busybox(), sandboxConfig: pod });
    await runtime.startContainer({ containerId });
    // The container goes away behind kuasard's back (as when kuasard dies inside a Task
    // Delete after the runtime's delete): the next kuasard finds the record of a container the runtime lacks.
    await env.restartKuasard({ crash: true });
    const [command, ...runtimeArgs] = runcKindRuntimeCommand(env.paths.kuasardLog);
    await execFileAsync(command!, [...runtimeArgs, '--root', join(env.paths.kuasarState, 'runc.oci'), 'delete', '--force', containerId]);
    await env.restartKuasard({ crash: true });
    // containerd dials the controller again only after its reconnect backoff.
    await untilAnswered(() => runtime.podSandboxStatus({ podSandboxId }), 30_000);

    const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, WAIT);
    assert.equal(status.exitCode, 255, 'an exit nobody saw is reported as 255');
    await untilAnswered(() => runtime.removeContainer({ containerId }), 30_000);
    await runtime.stopPodSandbox({ podSandboxId });
    await runtime.removePodSandbox({ podSandboxId });
    assert.deepEqual(await leaksSince(before), NO_LEAKS);
  }

  it(`keeps every pod usable or removable across ${KILLS} kills inside pod calls, and leaves nothing`, async () => {
    try {
      await crashRounds();
    } catch (err) {
      failed = true;
      throw err;
    }
  });

  async function crashRounds(): Promise<void> {
    const windows = await measureCalls();
    console.log(`kuasard's part of each call, ms from its start: ${JSON.stringify(windows)}`);
    const kills: Kill[] = [];
    for (let round = 0; round < KILLS; round++) {
      const stage = STAGES[round % STAGES.length]!;
      const sharedPid = random() < 0.5;
      const window = windows[stage];
      const delayMs = Math.round(window.from + random() * (window.to - window.from));
      const before = snapshotHost({ dirs: watched() });
      const pod = podConfig(`crash-${round}-${stage}`, sharedPid);
      const call = await prepare(stage, pod);
      const pods = await env.cri.runtime.listPodSandbox({});
      for (const p of pods.items) configs.set(p.id, pod);

      const pid = kuasardPid();
      const offset = statSync(env.paths.kuasardLog).size;
      const started = Date.now();
      const pending = call().then(
        (result) => {
          // RunPodSandbox names its pod only in its answer.
          const id = (result as { podSandboxId?: string }).podSandboxId;
          if (id) configs.set(id, pod);
          return 'ok';
        },
        (err: unknown) => (err instanceof RuntimeError ? (Code[err.code] ?? String(err.code)) : String(err)),
      );
      await sleep(delayMs);
      await env.restartKuasard({ crash: true });
      const outcome = await pending;
      const kill: Kill = { round, stage, delayMs, sharedPid, lastStage: stageRecords(pid, offset, started).at(-1)?.stage ?? '-', outcome };
      kills.push(kill);
      console.log(`kill ${round + 1}/${KILLS}: ${JSON.stringify(kill)}`);

      // The restarted kuasard serves new pods (retried while containerd's reconnect backoff
      // lasts, as kubelet would); the pod is then checked and removed with the others.
      const fresh = podConfig(`after-${round}`, sharedPid);
      const { podSandboxId: freshId } = await untilAnswered(
        () => env.cri.runtime.runPodSandbox({ config: fresh, runtimeHandler: env.handlers.kuasar['runc'] }),
        30_000,
      );
      configs.set(freshId, fresh);
      // A pod RunPodSandbox made but never answered for is listed all the same: find its config.
      for (const p of (await untilAnswered(() => env.cri.runtime.listPodSandbox({}), 30_000)).items) {
        if (!configs.has(p.id)) configs.set(p.id, pod);
      }
      await checkAndRemovePods();
      assert.deepEqual(
        await leaksSince(before),
        NO_LEAKS,
        `round ${round} (${stage}, killed after ${delayMs} ms; CRASH_SEED=${SEED}) left something behind`,
      );
    }
    const landed: Record<string, number> = {};
    for (const k of kills) landed[`${k.stage}: ${k.lastStage}`] = (landed[`${k.stage}: ${k.lastStage}`] ?? 0) + 1;
    console.log(`kills tried: ${kills.length}; last stage logged before each kill: ${JSON.stringify(landed, null, 1)}`);
    assert.equal(kills.length, KILLS);
  }
});
