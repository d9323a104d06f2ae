// The order in which a task's calls are answered on its connection, through the real ttrpc
// server, the Task service and core, with a fake kind: containerd answers an exit by deleting
// the task and closing the task's connection, so no exit may be reported while another call on
// the same process is still running on that connection.
//
// This is the churn test's "failed to kill container: ttrpc: closed" (StopPodSandbox right
// after StartContainer, under load), held still: CRI's Kill(SIGKILL) runs `runc kill`; the
// process dies of the signal and is reaped before `runc kill` has finished; the Wait was
// answered at once, CRI's exit handler deleted the task and closed its connection, and the
// Kill, still running on that connection, failed.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { after, before, beforeEach, afterEach, describe, it } from 'node:test';
import { pino } from 'pino';
import { Task } from '../../src/api/containerd/runtime/task/v3/shim_pb.js';
import type { SandboxRecord } from '../../src/base/model.js';
import { Sandbox } from '../../src/engine/sandbox.js';
import type { FakeProcess } from '../../src/devenv/fake-process.js';
import { TestKind } from '../../src/devenv/test-kind.js';
import { TtrpcClient, TtrpcServer, registerService, typedClient } from '../../src/rpc/ttrpc/index.js';
import { taskHandlers } from '../../src/services/task.js';

const STDIO = { stdin: '', stdout: '', stderr: '', terminal: false };
const SPEC = { args: ['sleep', '3600'], cwd: '/' };
const SIGKILL = 9;

describe('answers on a task connection, in the order containerd needs them', () => {
  let dir: string;
  let server: TtrpcServer<Sandbox>;
  let client: TtrpcClient;
  let task: ReturnType<typeof typedClient<typeof Task.method>>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kuasar-exit-order-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    /**
     * As `runc kill` does it under load: the signal is delivered and the process is dead and
     * reaped (its exit known to core) while the kill command has not returned yet; it returns
     * on a later turn of the event loop.
     */
    const killLikeRunc = async (process: FakeProcess, signal: number) => {
      process.end(128 + signal);
      await process.exited;
      await nextTurn();
    };
    const kind = new TestKind({ onKill: killLikeRunc });
    const record = { id: 'pod', kind: 'fake', namespace: 'k8s.io', phase: 'ready', containers: [] } as unknown as SandboxRecord;
    const sandbox = new Sandbox(record, dir, kind, { publish: () => undefined }, pino({ level: 'silent' }));
    sandbox.handle = await kind.createSandbox(sandbox);
    server = new TtrpcServer({ scope: sandbox });
    registerService(server, Task, taskHandlers());
    const path = join(dir, 'task.sock');
    await server.listen(path);
    client = await TtrpcClient.connect(path);
    task = typedClient(client, Task);
  });

  afterEach(async () => {
    client.close();
    await server.close();
  });

  /**
   * containerd's part once a Wait is answered: Delete(WithProcessKill) (a Kill of everything,
   * then Delete), then it closes the task's connection.
   */
  async function deleteAndHangUp(id: string, execId = ''): Promise<void> {
    await task.kill({ id, execId, signal: SIGKILL, all: true });
    await task.delete({ id, execId });
    client.close();
  }

  it('answers a Kill before the Wait of the process it killed, so that the Delete that follows cannot close the connection under it', async () => {
    await task.create({ id: 'c1', bundle: '/bundle', ...STDIO });
    await task.start({ id: 'c1' });
    const answered: string[] = [];
    const waited = task.wait({ id: 'c1' }).then(async (exit) => {
      answered.push('wait');
      await deleteAndHangUp('c1');
      return exit.exitStatus;
    });
    await task.kill({ id: 'c1', signal: SIGKILL });
    answered.push('kill');
    assert.equal(await waited, 128 + SIGKILL);
    assert.deepEqual(answered, ['kill', 'wait']);
  });

  it("answers a Kill of an exec before that exec's Wait", async () => {
    await task.create({ id: 'c1', bundle: '/bundle', ...STDIO });
    await task.start({ id: 'c1' });
    const spec = { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from(JSON.stringify(SPEC)) };
    await task.exec({ id: 'c1', execId: 'e1', spec, ...STDIO });
    await task.start({ id: 'c1', execId: 'e1' });
    const answered: string[] = [];
    const waited = task.wait({ id: 'c1', execId: 'e1' }).then(async (exit) => {
      answered.push('wait');
      await deleteAndHangUp('c1', 'e1');
      return exit.exitStatus;
    });
    await task.kill({ id: 'c1', execId: 'e1', signal: SIGKILL });
    answered.push('kill');
    assert.equal(await waited, 128 + SIGKILL);
    assert.deepEqual(answered, ['kill', 'wait']);
  });
});
