// The pure parts of the pod options and task state work: which sysctls a pod may set, the
// holder's command line, Update's resources, the new events, and core's pause/resume/OOM flow.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pino from 'pino';
import { fromBinary } from '@bufbuild/protobuf';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import {
  TaskDeleteSchema,
  TaskExitSchema,
  TaskOOMSchema,
  TaskPausedSchema,
  TaskResumedSchema,
} from '../../src/api/containerd/events/task_pb.js';
import { Code, RuntimeError } from '../../src/base/errors.js';
import type { EventSink, TaskEvent } from '../../src/base/events.js';
import type { SandboxRecord } from '../../src/base/model.js';
import { Sandbox } from '../../src/engine/sandbox.js';
import { TestKind } from '../../src/devenv/test-kind.js';
import { holderCommand } from '../../src/linux/pid-holder.js';
import { checkPodSysctls, sysctlNamespace } from '../../src/linux/sysctls.js';
import { packEvent } from '../../src/services/events.js';
import { decodeLinuxResources, LINUX_RESOURCES_TYPE } from '../../src/services/resources.js';

const hasCode = (code: Code) => (err: unknown) => err instanceof RuntimeError && err.code === code;

describe('pod sysctls', () => {
  it('knows which namespace a sysctl lives in', () => {
    assert.equal(sysctlNamespace('net.ipv4.ip_forward'), 'net');
    assert.equal(sysctlNamespace('net.core.somaxconn'), 'net');
    for (const ipc of ['kernel.shmmax', 'kernel.shm_rmid_forced', 'kernel.msgmnb', 'kernel.sem', 'fs.mqueue.msg_max']) {
      assert.equal(sysctlNamespace(ipc), 'ipc', ipc);
    }
    assert.equal(sysctlNamespace('kernel.domainname'), 'uts');
    // Not namespaced, or namespaced but not set by runc (so not by containerd's runc handler either).
    for (const node of [
      'vm.swappiness',
      'kernel.panic',
      'fs.file-max',
      'kernel.semx',
      'kernel.hostname',
      'kernel.shm_next_id',
      'kernel.msg_next_id',
    ]) {
      assert.equal(sysctlNamespace(node), undefined, node);
    }
  });

  it('accepts namespaced sysctls of namespaces the pod owns', () => {
    const sysctls = { 'net.ipv4.ping_group_range': '0 2147483647', 'kernel.shm_rmid_forced': '1' };
    assert.deepEqual(checkPodSysctls(sysctls, { net: true, ipc: true, uts: true }), sysctls);
    assert.deepEqual(checkPodSysctls({ 'kernel.domainname': 'example.org' }, { net: true, ipc: true, uts: true }), {
      'kernel.domainname': 'example.org',
    });
  });

  it('refuses node-wide sysctls, ones in a namespace shared with the host, and malformed ones', () => {
    assert.throws(() => checkPodSysctls({ 'vm.swappiness': '10' }, { net: true, ipc: true, uts: true }), hasCode(Code.InvalidArgument));
    assert.throws(() => checkPodSysctls({ 'kernel.domainname': 'x' }, { net: true, ipc: true, uts: false }), /uts namespace/);
    assert.throws(
      () => checkPodSysctls({ 'kernel.hostname': 'x' }, { net: true, ipc: true, uts: true }),
      /give the pod a hostname instead/,
    );
    assert.throws(() => checkPodSysctls({ 'net.ipv4.ip_forward': '1' }, { net: false, ipc: true, uts: true }), /shares with the host/);
    assert.throws(() => checkPodSysctls({ 'kernel.sem': '1 2 3 4' }, { net: true, ipc: false, uts: true }), /ipc namespace/);
    assert.throws(() => checkPodSysctls({ 'net/ipv4/ip_forward': '1' }, { net: true, ipc: true, uts: true }), /not a sysctl name/);
    assert.throws(() => checkPodSysctls({ 'net.ipv4.ip_forward': '1\nvm.x=1' }, { net: true, ipc: true, uts: true }), /line break/);
  });
});

describe('the PID namespace holder', () => {
  it("joins the pod's namespaces through nsenter, and runs catatonit alone when there are none", () => {
    assert.deepEqual(holderCommand({ netns: '/run/netns/cni-1', ipc: '/s/ns/ipc', uts: '/s/ns/uts' }), [
      'nsenter',
      '--net=/run/netns/cni-1',
      '--ipc=/s/ns/ipc',
      '--uts=/s/ns/uts',
      '--',
      'catatonit',
      '-P',
    ]);
    assert.deepEqual(holderCommand({}), ['catatonit', '-P']);
  });
});

describe('Update resources', () => {
  const any = (typeUrl: string, json: string) => ({ typeUrl, value: new TextEncoder().encode(json) }) as never;

  it('decodes LinuxResources JSON', () => {
    const resources = decodeLinuxResources(any(LINUX_RESOURCES_TYPE, '{"memory":{"limit":67108864},"cpu":{"quota":50000}}'), 'update c1');
    assert.deepEqual(resources, { memory: { limit: 67108864 }, cpu: { quota: 50000 } });
  });

  it('refuses a missing, mistyped or malformed payload with InvalidArgument', () => {
    const invalid = hasCode(Code.InvalidArgument);
    assert.throws(() => decodeLinuxResources(undefined, 'update c1'), invalid);
    assert.throws(() => decodeLinuxResources(any('types.containerd.io/x/WindowsResources', '{}'), 'update c1'), invalid);
    assert.throws(() => decodeLinuxResources(any(LINUX_RESOURCES_TYPE, '{"memory":'), 'update c1'), /not JSON/);
    assert.throws(() => decodeLinuxResources(any(LINUX_RESOURCES_TYPE, '[1]'), 'update c1'), /not a JSON object/);
  });
});

describe('events of the task state', () => {
  it('packs TaskOOM, TaskPaused and TaskResumed for the container', () => {
    const oom = packEvent({ topic: '/tasks/oom', containerId: 'c1' });
    assert.match(oom.typeUrl, /containerd\.events\.TaskOOM$/);
    assert.equal(fromBinary(TaskOOMSchema, oom.value).containerId, 'c1');
    assert.equal(fromBinary(TaskPausedSchema, packEvent({ topic: '/tasks/paused', containerId: 'c2' }).value).containerId, 'c2');
    assert.equal(fromBinary(TaskResumedSchema, packEvent({ topic: '/tasks/resumed', containerId: 'c3' }).value).containerId, 'c3');
  });

  it('packs TaskExit and TaskDelete with the process and its exit, under the bare type name containerd uses', () => {
    const ended = { containerId: 'c1', execId: 'e1', pid: 42, exitStatus: 137, exitedAt: '2026-01-02T03:04:05.678Z' };
    for (const [topic, schema] of [
      ['/tasks/exit', TaskExitSchema],
      ['/tasks/delete', TaskDeleteSchema],
    ] as const) {
      const any = packEvent({ topic, ...ended });
      assert.equal(any.typeUrl, schema.typeName);
      const event = fromBinary(schema, any.value);
      assert.deepEqual(
        { containerId: event.containerId, id: event.id, pid: event.pid, exitStatus: event.exitStatus },
        { containerId: 'c1', id: 'e1', pid: 42, exitStatus: 137 },
      );
      assert.equal(event.exitedAt && timestampDate(event.exitedAt).toISOString(), ended.exitedAt);
    }
  });
});

async function withSandbox(
  oomAtExit: boolean,
  body: (s: Sandbox, events: TaskEvent[], calls: string[], exit: (status: number) => void) => Promise<void>,
) {
  const dir = await mkdtemp(join(tmpdir(), 'kuasar-sandbox-'));
  const events: TaskEvent[] = [];
  const sink: EventSink = { publish: (_ns, event) => void events.push(event) };
  const kind = new TestKind();
  // Only what the tests ask of the container, not its create and start.
  const calls = kind.calls;
  const exit = (status: number) => kind.processes.get('c1')?.end(status, { oomKilled: oomAtExit });
  const record = { id: 's1', namespace: 'k8s.io', phase: 'ready', containers: [] } as unknown as SandboxRecord;
  try {
    const sandbox = new Sandbox(record, dir, kind, sink, pino({ level: 'silent' }));
    sandbox.handle = await kind.createSandbox(sandbox);
    await sandbox.createTask({ id: 'c1', bundle: '/b', rootfs: [], stdio: { stdin: '', stdout: '', stderr: '', terminal: false } });
    await sandbox.startTask('c1');
    calls.length = 0;
    await body(sandbox, events, calls, exit);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('pause, resume and OOM in core', () => {
  it('pauses a running task and resumes it, with events, and refuses the wrong state', async () => {
    await withSandbox(false, async (sandbox, events, calls) => {
      await assert.rejects(sandbox.resumeTask('c1'), hasCode(Code.FailedPrecondition));
      await sandbox.pauseTask('c1');
      assert.equal(sandbox.taskState('c1').status, 'paused');
      await assert.rejects(sandbox.pauseTask('c1'), hasCode(Code.FailedPrecondition));
      await assert.rejects(sandbox.deleteTask('c1'), hasCode(Code.FailedPrecondition), 'a paused task is not deleted');
      await sandbox.resumeTask('c1');
      assert.equal(sandbox.taskState('c1').status, 'running');
      assert.deepEqual(calls, ['pause c1', 'resume c1']);
      assert.deepEqual(events.map((e) => e.topic).slice(-2), ['/tasks/paused', '/tasks/resumed']);
      await assert.rejects(sandbox.pauseTask('nope'), hasCode(Code.NotFound));
    });
  });

  it('publishes TaskOOM before the exit of a container the kind reports OOM-killed', async () => {
    await withSandbox(true, async (sandbox, events, _calls, exit) => {
      exit(137);
      assert.equal((await sandbox.waitTask('c1')).exitStatus, 137);
      const topics = events.map((e) => e.topic);
      assert.deepEqual(topics.slice(-2), ['/tasks/oom', '/tasks/exit']);
      await assert.rejects(sandbox.pauseTask('c1'), hasCode(Code.FailedPrecondition), 'a stopped task is not paused');
      await assert.rejects(sandbox.updateTask('c1', {}), hasCode(Code.FailedPrecondition), 'a stopped task is not updated');
    });
  });
});
