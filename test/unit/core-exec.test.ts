// Exec processes in core: the lifecycle containerd drives (Exec, Start, Wait, Kill, Delete), exit
// latches per (container, exec), the events, and the rules runc's shim follows. The kind is a
// fake whose processes end when the test says so.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { Code, RuntimeError } from '../../src/base/errors.js';
import type { TaskEvent } from '../../src/base/events.js';
import type { SandboxRecord } from '../../src/base/model.js';
import { Sandbox } from '../../src/engine/sandbox.js';
import { TestKind } from '../../src/devenv/test-kind.js';

const hasCode = (code: Code) => (err: unknown) => err instanceof RuntimeError && err.code === code;
const STDIO = { stdin: '', stdout: '/fifo/out', stderr: '/fifo/err', terminal: false };
const SPEC = { args: ['sh', '-c', 'true'], cwd: '/' };

describe('exec processes in core', () => {
  let dir: string;
  let sandbox: Sandbox;
  let events: TaskEvent[];
  let kind: TestKind;
  /** The kind's calls since the container started. */
  const calls = () => kind.calls.filter((call) => !call.startsWith('exec '));

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kuasar-core-exec-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    events = [];
    kind = new TestKind();
    const record = {
      id: 'pod',
      kind: 'fake',
      namespace: 'k8s.io',
      phase: 'ready',
      containers: [],
    } as unknown as SandboxRecord;
    sandbox = new Sandbox(record, dir, kind, { publish: (_ns, event) => void events.push(event) }, pino({ level: 'silent' }));
    sandbox.handle = await kind.createSandbox(sandbox);
    await sandbox.createTask({ id: 'c1', bundle: '/bundle', rootfs: [], stdio: STDIO });
    await sandbox.startTask('c1');
    events = [];
    kind.calls.length = 0;
  });

  it('adds, starts, waits for and deletes an exec, with the events containerd expects', async () => {
    await sandbox.execProcess('c1', { execId: 'e1', spec: SPEC, stdio: STDIO });
    assert.equal(sandbox.taskState('c1', 'e1').status, 'created');
    const waited = sandbox.waitTask('c1', 'e1');
    const pid = await sandbox.startTask('c1', 'e1');
    assert.deepEqual(sandbox.taskState('c1', 'e1'), { id: 'c1', bundle: '/bundle', pid, status: 'running', stdio: STDIO, exit: null });
    kind.processes.get('e1')!.end(7);
    assert.equal((await waited).exitStatus, 7);
    assert.equal(sandbox.taskState('c1', 'e1').status, 'stopped');
    assert.equal(sandbox.taskState('c1').status, 'running', 'the container goes on');
    const deleted = await sandbox.deleteTask('c1', 'e1');
    assert.deepEqual([deleted.pid, deleted.exit.exitStatus], [pid, 7]);
    assert.throws(() => sandbox.taskState('c1', 'e1'), hasCode(Code.NotFound));
    assert.deepEqual(
      events.map((e) => [e.topic, 'execId' in e ? e.execId : '', 'pid' in e ? e.pid : 0]),
      [
        ['/tasks/exec-added', 'e1', 0],
        ['/tasks/exec-started', 'e1', pid],
        ['/tasks/exit', 'e1', pid],
      ],
      "no TaskDelete for an exec, as runc's shim",
    );
  });

  it('reports an exec that ends before its Start is answered only once that Start is done and TaskExecStarted published', async () => {
    await sandbox.execProcess('c1', { execId: 'e1', spec: SPEC, stdio: STDIO });
    // What had been published when the Wait was answered: the Start's work was done by then.
    const publishedAtWait = sandbox.waitTask('c1', 'e1').then(() => events.map((e) => e.topic));
    kind.endAtStart = true;
    await sandbox.startTask('c1', 'e1');
    assert.deepEqual(await publishedAtWait, ['/tasks/exec-added', '/tasks/exec-started', '/tasks/exit']);
    assert.deepEqual(
      events.map((e) => e.topic),
      ['/tasks/exec-added', '/tasks/exec-started', '/tasks/exit'],
    );
  });

  it('reports an init that ends before its Start is answered only once that Start is done and TaskStart published', async () => {
    await sandbox.createTask({ id: 'c2', bundle: '/bundle', rootfs: [], stdio: STDIO });
    const publishedAtWait = sandbox.waitTask('c2').then(() => events.map((e) => e.topic));
    kind.endAtStart = true;
    await sandbox.startTask('c2');
    assert.deepEqual(await publishedAtWait, ['/tasks/create', '/tasks/start', '/tasks/exit']);
    assert.deepEqual(
      events.map((e) => e.topic),
      ['/tasks/create', '/tasks/start', '/tasks/exit'],
    );
    assert.equal(sandbox.taskState('c2').status, 'stopped', 'never moved back to running');
  });

  it("refuses what runc's shim refuses", async () => {
    await assert.rejects(sandbox.execProcess('c1', { execId: '../x', spec: SPEC, stdio: STDIO }), hasCode(Code.InvalidArgument));
    await assert.rejects(sandbox.execProcess('nope', { execId: 'e1', spec: SPEC, stdio: STDIO }), hasCode(Code.NotFound));
    await sandbox.execProcess('c1', { execId: 'e1', spec: SPEC, stdio: STDIO });
    await assert.rejects(sandbox.execProcess('c1', { execId: 'e1', spec: SPEC, stdio: STDIO }), hasCode(Code.AlreadyExists));
    await assert.rejects(sandbox.killTask('c1', 9, false, 'e1'), hasCode(Code.FailedPrecondition), 'not started');
    await assert.rejects(sandbox.startTask('c1', 'missing'), hasCode(Code.NotFound));
    await sandbox.startTask('c1', 'e1');
    await assert.rejects(sandbox.startTask('c1', 'e1'), hasCode(Code.FailedPrecondition), 'started twice');
    await assert.rejects(sandbox.deleteTask('c1', 'e1'), hasCode(Code.FailedPrecondition), 'still running');
    kind.processes.get('e1')!.end(0);
    await sandbox.waitTask('c1', 'e1');
    await assert.rejects(sandbox.killTask('c1', 9, false, 'e1'), hasCode(Code.NotFound), 'already finished');
    await sandbox.killTask('c1', 9, true, 'e1');
  });

  it('releases the waiters of an exec that fails to start, so that containerd does not hang', async () => {
    await sandbox.execProcess('c1', { execId: 'e1', spec: SPEC, stdio: STDIO });
    const waited = sandbox.waitTask('c1', 'e1');
    kind.fail('exec');
    await assert.rejects(sandbox.startTask('c1', 'e1'), /injected failure/);
    assert.equal((await waited).exitStatus, 255);
    assert.equal(sandbox.taskState('c1', 'e1').status, 'stopped');
    // containerd's Delete(WithProcessKill): Kill(SIGKILL, all), then Delete.
    await sandbox.killTask('c1', 9, true, 'e1');
    await sandbox.deleteTask('c1', 'e1');
    assert.ok(!events.some((e) => e.topic === '/tasks/exec-started' || e.topic === '/tasks/exit'));
  });

  it('releases the waiters of an exec deleted before it started', async () => {
    await sandbox.execProcess('c1', { execId: 'e1', spec: SPEC, stdio: STDIO });
    const waited = sandbox.waitTask('c1', 'e1');
    await sandbox.deleteTask('c1', 'e1');
    assert.equal((await waited).exitStatus, 255);
  });

  it("reports the init's exit after its execs have been killed and reaped", async () => {
    await sandbox.execProcess('c1', { execId: 'e1', spec: SPEC, stdio: STDIO });
    await sandbox.startTask('c1', 'e1');
    kind.processes.get('c1')!.end(0);
    await sandbox.waitTask('c1');
    assert.deepEqual(calls(), ['kill e1 9']);
    const exits = events.filter((e) => e.topic === '/tasks/exit').map((e) => ('execId' in e ? e.execId : ''));
    assert.deepEqual(exits, ['e1', 'c1']);
    await sandbox.deleteTask('c1');
    assert.deepEqual(calls(), ['kill e1 9', 'deleteExec e1', 'delete c1'], 'deleting the container releases its execs first');
  });

  it('passes resizes and stdin closes to the kind for the init or an exec', async () => {
    await sandbox.execProcess('c1', { execId: 'e1', spec: SPEC, stdio: { ...STDIO, terminal: true } });
    await sandbox.startTask('c1', 'e1');
    await sandbox.resizePty('c1', '', { width: 80, height: 24 });
    await sandbox.resizePty('c1', 'e1', { width: 100, height: 40 });
    await sandbox.closeStdin('c1', 'e1');
    await assert.rejects(sandbox.closeStdin('c1', 'nope'), hasCode(Code.NotFound));
    assert.deepEqual(calls(), ['resize c1 80x24', 'resize e1 100x40', 'closeStdin e1']);
  });
});
