// The engine's lifecycle of a sandbox, driven through the Sandboxer with the in-memory test kind:
// what each failure undoes, stop and shutdown, a pod whose isolation ends by itself, what a
// kind's capabilities allow, and what survives a restart per capability.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { Code, internal, RuntimeError } from '../../src/base/errors.js';
import type { TaskEvent } from '../../src/base/events.js';
import { podSpec } from '../../src/devenv/pod-spec.js';
import { fakeTaskEndpoints, TestKind, type TestKindOptions } from '../../src/devenv/test-kind.js';
import { Sandboxer, type TaskEndpoints } from '../../src/engine/sandboxer.js';

const isCode = (code: Code) => (err: unknown) => err instanceof RuntimeError && err.code === code;
const STDIO = { stdin: '', stdout: '/fifo/out', stderr: '', terminal: false };
const silent = pino({ level: 'silent' });

describe('Sandboxer lifecycle', () => {
  let stateDir: string;
  let events: TaskEvent[];

  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'kuasar-sandboxer-'));
    events = [];
  });
  afterEach(async () => {
    await rm(stateDir, { recursive: true, force: true });
  });

  function setup(options: TestKindOptions = {}, endpoints: TaskEndpoints = fakeTaskEndpoints()) {
    const kind = new TestKind(options);
    const sandboxer = new Sandboxer(kind, stateDir, { publish: (_ns, event) => void events.push(event) }, endpoints, silent);
    return { kind, sandboxer, dirOf: (id: string) => join(stateDir, kind.name, id) };
  }

  async function runningPod(options: TestKindOptions = {}) {
    const parts = setup(options);
    await parts.sandboxer.init();
    await parts.sandboxer.create({ id: 'pod', namespace: 'k8s.io', netnsPath: '', pod: podSpec() });
    await parts.sandboxer.start('pod');
    const sandbox = parts.sandboxer.get('pod');
    await sandbox.createTask({ id: 'c1', bundle: '/bundle', rootfs: [], stdio: STDIO });
    await sandbox.startTask('c1');
    return { ...parts, sandbox };
  }

  it('undoes a Create whose kind step fails: the kind releases what it took, the directory goes, the id is free again', async () => {
    const { kind, sandboxer, dirOf } = setup();
    await sandboxer.init();
    kind.fail('createSandbox');
    await assert.rejects(
      sandboxer.create({ id: 'pod', namespace: 'k8s.io', netnsPath: '', pod: podSpec() }),
      /createSandbox pod: injected failure/,
    );
    assert.deepEqual(kind.calls, ['createSandbox pod', 'destroyLost pod']);
    assert.equal(existsSync(dirOf('pod')), false);
    assert.throws(() => sandboxer.get('pod'), isCode(Code.NotFound));
    kind.failing.clear();
    await sandboxer.create({ id: 'pod', namespace: 'k8s.io', netnsPath: '', pod: podSpec() });
    assert.equal(sandboxer.status('pod').phase, 'created');
  });

  it('undoes a Start whose kind step or task endpoint fails: containerd sends no Shutdown after it', async () => {
    for (const failure of ['kind', 'endpoint'] as const) {
      const endpoints: TaskEndpoints = {
        check: () => undefined,
        open: async () => {
          if (failure === 'endpoint') throw internal('listen: address in use');
          return { address: 'fake://pod', close: async () => undefined };
        },
      };
      const { kind, sandboxer, dirOf } = setup({}, endpoints);
      if (failure === 'kind') kind.fail('start');
      await sandboxer.init();
      await sandboxer.create({ id: 'pod', namespace: 'k8s.io', netnsPath: '', pod: podSpec() });
      await assert.rejects(sandboxer.start('pod'), failure === 'kind' ? /injected failure/ : /address in use/);
      assert.deepEqual(kind.calls, ['createSandbox pod', 'start pod', 'destroy pod'], failure);
      assert.equal(existsSync(dirOf('pod')), false, failure);
      assert.throws(() => sandboxer.get('pod'), isCode(Code.NotFound), failure);
    }
  });

  it("gives containerd the kind's own Task API address when it names one", async () => {
    let opened = 0;
    const endpoints: TaskEndpoints = {
      check: () => undefined,
      open: async () => ({ address: `fake://${++opened}`, close: async () => undefined }),
    };
    const { sandboxer } = setup({ taskAddress: 'ttrpc+unix:///guest/agent.sock' }, endpoints);
    await sandboxer.init();
    await sandboxer.create({ id: 'pod', namespace: 'k8s.io', netnsPath: '', pod: podSpec() });
    assert.equal((await sandboxer.start('pod')).address, 'ttrpc+unix:///guest/agent.sock');
    assert.equal(opened, 0, "kuasard's own socket is not opened");
  });

  it('stops every container (SIGTERM first), answers Wait, and shuts down once; a second Shutdown finds nothing', async () => {
    const { kind, sandboxer, dirOf } = await runningPod();
    const waited = sandboxer.wait('pod');
    await sandboxer.stop('pod', 1_000);
    assert.equal((await waited).exitStatus, 0);
    assert.ok(kind.calls.includes('kill c1 15 all'), kind.calls.join('; '));
    assert.equal(sandboxer.status('pod').ready, false);
    await sandboxer.shutdown('pod');
    await assert.rejects(sandboxer.shutdown('pod'), isCode(Code.NotFound));
    assert.deepEqual(
      kind.calls.filter((call) => /^(stop|delete|destroy)/.test(call)),
      ['stop pod', 'delete c1', 'destroy pod'],
    );
    assert.equal(existsSync(dirOf('pod')), false);
  });

  it('answers a Kill the kind refuses for a container whose Start failed as for a process already gone, and its exit follows', async () => {
    // As runsc does: it signals no container in state "created", which one whose start failed
    // stays in until its end is noticed.
    const refuse = async () => {
      throw new RuntimeError(Code.FailedPrecondition, 'cannot signal container "c" in state created');
    };
    const { kind, sandboxer } = setup({ onKill: refuse });
    await sandboxer.init();
    await sandboxer.create({ id: 'pod', namespace: 'k8s.io', netnsPath: '', pod: podSpec() });
    await sandboxer.start('pod');
    const sandbox = sandboxer.get('pod');
    for (const id of ['ok', 'bad']) await sandbox.createTask({ id, bundle: '/bundle', rootfs: [], stdio: STDIO });
    kind.fail('startContainer', 'bad');
    await assert.rejects(sandbox.startTask('bad'), /startContainer bad: injected failure/);
    await assert.rejects(
      sandbox.killTask('bad', 9, true),
      (err: unknown) => isCode(Code.NotFound)(err) && /its start failed/.test(String(err)),
    );
    await assert.rejects(sandbox.killTask('ok', 9, true), isCode(Code.FailedPrecondition), 'any other container gets the refusal as it is');
    kind.processes.get('bad')!.end(255);
    assert.equal((await sandbox.waitTask('bad')).exitStatus, 255);
    assert.equal(sandbox.taskState('bad').status, 'stopped');
  });

  it('reports a pod whose isolation ended not ready, with the reason, after its containers have ended, and answers Wait', async () => {
    const { kind, sandboxer } = await runningPod();
    const waited = sandboxer.wait('pod');
    kind.die('pod', 'the VM exited');
    const exit = await waited;
    assert.equal(exit.exitStatus, 255);
    const status = sandboxer.status('pod');
    assert.deepEqual([status.ready, status.reason], [false, 'the VM exited']);
    const exits = events.filter((e) => e.topic === '/tasks/exit');
    assert.deepEqual(
      exits.map((e) => (e.topic === '/tasks/exit' ? [e.containerId, e.exitStatus] : [])),
      [['c1', 137]],
    );
    await assert.rejects(
      sandboxer.get('pod').createTask({ id: 'c2', bundle: '/b', rootfs: [], stdio: STDIO }),
      isCode(Code.FailedPrecondition),
    );
    await sandboxer.stop('pod', 0);
    await sandboxer.shutdown('pod');
  });

  it('answers Unimplemented, before the kind is asked, for what the kind does not support', async () => {
    const { kind, sandbox } = await runningPod({
      capabilities: { exec: false, terminal: false, pauseResume: false, updateResources: false, streamingIo: false },
    });
    const calls = kind.calls.length;
    await assert.rejects(sandbox.execProcess('c1', { execId: 'e1', spec: { args: ['sh'] }, stdio: STDIO }), (err: unknown) => {
      assert.ok(isCode(Code.Unimplemented)(err));
      assert.match((err as Error).message, /exec is not supported by the fake kind/);
      return true;
    });
    await assert.rejects(
      sandbox.createTask({ id: 'c2', bundle: '/b', rootfs: [], stdio: { ...STDIO, terminal: true } }),
      isCode(Code.Unimplemented),
    );
    await assert.rejects(
      sandbox.createTask({ id: 'c3', bundle: '/b', rootfs: [], stdio: { ...STDIO, stdout: 'ttrpc+unix:///x?streaming_id=c3-stdout' } }),
      isCode(Code.Unimplemented),
    );
    await assert.rejects(sandbox.pauseTask('c1'), isCode(Code.Unimplemented));
    await assert.rejects(sandbox.updateTask('c1', {}), isCode(Code.Unimplemented));
    assert.equal(kind.calls.length, calls, 'the kind was asked nothing');
  });

  it("passes Controller Update to the kind's sandbox", async () => {
    const { kind, sandboxer } = await runningPod();
    await sandboxer.update('pod', { fields: ['spec', 'labels'] });
    assert.ok(kind.calls.includes('update pod spec,labels'));
  });

  /** Waits for every save asked for, a Start's too (it is saved once its answer is out). */
  async function allSaved(sandbox: { saved(): Promise<void> }): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    await sandbox.saved();
  }

  it("saves each container's record in a file of its own, written when it changes and removed on Delete; the sandbox's file lists none", async () => {
    const { kind, sandbox, dirOf } = await runningPod();
    await sandbox.createTask({ id: 'c2', bundle: '/bundle', rootfs: [], stdio: STDIO });
    await allSaved(sandbox);
    const read = async (file: string) => JSON.parse(await readFile(join(dirOf('pod'), file), 'utf8')) as Record<string, unknown>;
    assert.deepEqual((await read('state.json'))['containers'], []);
    assert.equal((await read('state.containers/c1.json'))['status'], 'running');
    assert.equal((await read('state.containers/c2.json'))['status'], 'created');
    kind.processes.get('c1')!.end(3);
    await sandbox.waitTask('c1');
    await allSaved(sandbox);
    assert.deepEqual((await read('state.containers/c1.json'))['exit'], (await sandbox.waitTask('c1')) as unknown);
    await sandbox.deleteTask('c1');
    assert.equal(existsSync(join(dirOf('pod'), 'state.containers/c1.json')), false, 'the deleted container has no record left');
    assert.equal(existsSync(join(dirOf('pod'), 'state.containers/c2.json')), true);
  });

  it('writes no record at Start for a kind whose containers end with kuasard; the next run reports the container exited (255)', async () => {
    const first = await runningPod({ capabilities: { restart: { containers: false } } });
    await allSaved(first.sandbox);
    const record = JSON.parse(await readFile(join(first.dirOf('pod'), 'state.containers/c1.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(record['status'], 'created', "the Create's record is the last one written");
    assert.equal(first.sandbox.taskState('c1').status, 'running');
    await first.sandbox.stopSaving();
    const next = new Sandboxer(first.kind, stateDir, { publish: () => undefined }, fakeTaskEndpoints(), silent);
    await next.init();
    assert.equal((await next.get('pod').waitTask('c1')).exitStatus, 255);
    assert.equal(next.get('pod').taskState('c1').status, 'stopped');
    await next.stop('pod', 0);
    await next.shutdown('pod');
  });

  it('after a restart, reads a state file that holds its containers itself (an older kuasard) and splits them into files', async () => {
    const first = await runningPod({ capabilities: { restart: { containers: true } } });
    await allSaved(first.sandbox);
    const dir = first.dirOf('pod');
    const container = JSON.parse(await readFile(join(dir, 'state.containers/c1.json'), 'utf8')) as unknown;
    const record = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(dir, 'state.json'), JSON.stringify({ ...record, containers: [container] }));
    await rm(join(dir, 'state.containers'), { recursive: true });
    await first.sandbox.stopSaving();
    const next = new Sandboxer(first.kind, stateDir, { publish: () => undefined }, fakeTaskEndpoints(), silent);
    await next.init();
    assert.equal(next.get('pod').taskState('c1').status, 'running', 'the container is followed again');
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'state.containers/c1.json'), 'utf8')), container);
    assert.deepEqual((JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as Record<string, unknown>)['containers'], []);
    await next.stop('pod', 0);
    await next.shutdown('pod');
  });

  it('after a restart, reports a sandbox with an unusable container record not ready, naming the file', async () => {
    const first = await runningPod();
    await allSaved(first.sandbox);
    await first.sandbox.stopSaving();
    await writeFile(join(first.dirOf('pod'), 'state.containers/c1.json'), '{"id": "c1"');
    const next = new Sandboxer(first.kind, stateDir, { publish: () => undefined }, fakeTaskEndpoints(), silent);
    await next.init();
    assert.equal(next.status('pod').ready, false);
    assert.match(next.status('pod').reason, /state of sandbox pod is unusable: container record c1\.json: not JSON/);
    await next.shutdown('pod');
  });

  for (const survives of [true, false]) {
    it(`after a restart, follows a container again only when the kind says containers survive (${survives})`, async () => {
      const first = await runningPod({ capabilities: { restart: { containers: survives } } });
      await first.sandbox.execProcess('c1', { execId: 'e1', spec: { args: ['sh'] }, stdio: STDIO });
      await first.sandbox.startTask('c1', 'e1');
      // The next run, with the processes of the first still running (the same kind object keeps
      // them). The first run is dead: it writes nothing more (its container's exit would, into
      // the directory the next run removes).
      await first.sandbox.stopSaving();
      const next = new Sandboxer(first.kind, stateDir, { publish: (_ns, event) => void events.push(event) }, fakeTaskEndpoints(), silent);
      await next.init();
      const sandbox = next.get('pod');
      assert.equal((await sandbox.waitTask('c1', 'e1')).exitStatus, 255, 'execs do not survive (the capability says so)');
      if (survives) {
        assert.equal(sandbox.taskState('c1').status, 'running');
        first.kind.processes.get('c1')!.end(0);
        assert.equal((await sandbox.waitTask('c1')).exitStatus, 0);
      } else {
        assert.equal((await sandbox.waitTask('c1')).exitStatus, 255);
      }
      await next.stop('pod', 0);
      await next.shutdown('pod');
    });
  }
});
