// Wire facts of the generated protocol code: bytes are written by hand with explicit field
// numbers (as containerd or kubelet would send them) and decoded with our schemas, so a wrong
// field number in proto/ fails here.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { anyIs, anyUnpack, AnySchema, timestampDate } from '@bufbuild/protobuf/wkt';
import {
  ContainerState,
  ContainerStatusSchema,
  ExecSyncRequestSchema,
  PodSandboxConfigSchema,
} from '../../src/api/cri/runtime/v1/api_pb.js';
import {
  ControllerCreateRequestSchema,
  ControllerStartResponseSchema,
  ControllerUpdateRequestSchema,
} from '../../src/api/containerd/services/sandbox/v1/sandbox_pb.js';
import { SandboxSchema } from '../../src/api/containerd/types/sandbox_pb.js';
import { CreateTaskRequestSchema, StateResponseSchema } from '../../src/api/containerd/runtime/task/v3/shim_pb.js';
import { Task as TaskV2 } from '../../src/api/containerd/runtime/task/v2/shim_pb.js';
import { Task as TaskV3 } from '../../src/api/containerd/runtime/task/v3/shim_pb.js';
import { Status } from '../../src/api/containerd/types/task/task_pb.js';
import { OptionsSchema } from '../../src/api/containerd/runc/options_pb.js';
import { MetricsSchema as CgroupV2MetricsSchema } from '../../src/api/containerd/cgroups/v2/metrics_pb.js';
import { MetricsSchema as CgroupV1MetricsSchema } from '../../src/api/containerd/cgroups/v1/metrics_pb.js';
import { TaskExitSchema, TaskOOMSchema } from '../../src/api/containerd/events/task_pb.js';
import { EnvelopeSchema } from '../../src/api/containerd/types/event_pb.js';
import { Events } from '../../src/api/containerd/services/events/ttrpc/v1/events_pb.js';
import { Streaming, StreamInitSchema } from '../../src/api/containerd/services/streaming/v1/streaming_pb.js';
import { DataSchema, WindowUpdateSchema } from '../../src/api/containerd/types/transfer/streaming_pb.js';

/** A length-delimited field holding a nested message written by `fill`. */
function nested(writer: BinaryWriter, field: number, fill: (inner: BinaryWriter) => void): BinaryWriter {
  writer.tag(field, 2).fork();
  fill(writer);
  return writer.join();
}

function mapEntry(writer: BinaryWriter, field: number, key: string, value: string): BinaryWriter {
  return nested(writer, field, (entry) => entry.tag(1, 2).string(key).tag(2, 2).string(value));
}

describe('CRI runtime.v1 wire format', () => {
  test('PodSandboxConfig fields 1-8 decode from hand-written bytes', () => {
    const writer = new BinaryWriter();
    nested(writer, 1, (m) => m.tag(1, 2).string('web').tag(2, 2).string('uid-1').tag(3, 2).string('ns').tag(4, 0).uint32(2));
    writer.tag(2, 2).string('host-a');
    writer.tag(3, 2).string('/var/log/pods/ns_web_uid-1');
    nested(writer, 4, (dns) => dns.tag(1, 2).string('10.0.0.10').tag(2, 2).string('svc.cluster.local').tag(3, 2).string('ndots:5'));
    nested(writer, 5, (port) => port.tag(1, 0).int32(1).tag(2, 0).int32(80).tag(3, 0).int32(8080).tag(4, 2).string('127.0.0.1'));
    mapEntry(writer, 6, 'app', 'web');
    mapEntry(writer, 7, 'note', 'x');
    nested(writer, 8, (linux) => {
      linux.tag(1, 2).string('/kubepods/pod1');
      nested(linux, 2, (security) => nested(security, 1, (namespaces) => namespaces.tag(1, 0).int32(2).tag(2, 0).int32(1)));
      mapEntry(linux, 3, 'net.ipv4.ip_forward', '1');
    });

    const config = fromBinary(PodSandboxConfigSchema, writer.finish());
    assert.deepEqual(
      { name: config.metadata?.name, uid: config.metadata?.uid, ns: config.metadata?.namespace, attempt: config.metadata?.attempt },
      { name: 'web', uid: 'uid-1', ns: 'ns', attempt: 2 },
    );
    assert.equal(config.hostname, 'host-a');
    assert.equal(config.logDirectory, '/var/log/pods/ns_web_uid-1');
    assert.deepEqual(config.dnsConfig?.options, ['ndots:5']);
    assert.equal(config.portMappings[0]?.protocol, 1); // UDP
    assert.equal(config.portMappings[0]?.hostPort, 8080);
    assert.equal(config.portMappings[0]?.hostIp, '127.0.0.1');
    assert.deepEqual(config.labels, { app: 'web' });
    assert.deepEqual(config.annotations, { note: 'x' });
    assert.equal(config.linux?.cgroupParent, '/kubepods/pod1');
    assert.equal(config.linux?.securityContext?.namespaceOptions?.network, 2); // NODE
    assert.equal(config.linux?.securityContext?.namespaceOptions?.pid, 1); // CONTAINER
    assert.deepEqual(config.linux?.sysctls, { 'net.ipv4.ip_forward': '1' });
  });

  test('ContainerStatus keeps exit code, reason, times and log path at their numbers', () => {
    const writer = new BinaryWriter()
      .tag(1, 2)
      .string('c1')
      .tag(3, 0)
      .int32(2) // CONTAINER_EXITED
      .tag(4, 0)
      .int64(1n)
      .tag(5, 0)
      .int64(2n)
      .tag(6, 0)
      .int64(3n)
      .tag(7, 0)
      .int32(137)
      .tag(9, 2)
      .string('sha256:abc')
      .tag(10, 2)
      .string('OOMKilled')
      .tag(11, 2)
      .string('out of memory')
      .tag(15, 2)
      .string('/var/log/pods/x/c/0.log')
      .tag(17, 2)
      .string('sha256:def');
    const status = fromBinary(ContainerStatusSchema, writer.finish());
    assert.equal(status.state, ContainerState.CONTAINER_EXITED);
    assert.deepEqual([status.createdAt, status.startedAt, status.finishedAt], [1n, 2n, 3n]);
    assert.equal(status.exitCode, 137);
    assert.equal(status.imageRef, 'sha256:abc');
    assert.equal(status.reason, 'OOMKilled');
    assert.equal(status.message, 'out of memory');
    assert.equal(status.logPath, '/var/log/pods/x/c/0.log');
    assert.equal(status.imageId, 'sha256:def');
  });

  test('ExecSyncRequest is container_id=1, cmd=2, timeout=3', () => {
    const bytes = toBinary(ExecSyncRequestSchema, create(ExecSyncRequestSchema, { containerId: 'c', cmd: ['ls', '-l'], timeout: 5n }));
    const expected = new BinaryWriter().tag(1, 2).string('c').tag(2, 2).string('ls').tag(2, 2).string('-l').tag(3, 0).int64(5n).finish();
    assert.deepEqual(bytes, expected);
  });
});

describe('sandbox controller wire format', () => {
  test('Create.options carries a PodSandboxConfig under the prefix-less type URL CRI uses', () => {
    const config = create(PodSandboxConfigSchema, { hostname: 'h', metadata: { name: 'p' } });
    const options = create(AnySchema, {
      typeUrl: 'runtime.v1.PodSandboxConfig',
      value: toBinary(PodSandboxConfigSchema, config),
    });
    const wire = toBinary(
      ControllerCreateRequestSchema,
      create(ControllerCreateRequestSchema, { sandboxId: 's1', options, netnsPath: '/run/netns/n1', sandboxer: 'kuasar' }),
    );
    const request = fromBinary(ControllerCreateRequestSchema, wire);
    assert.ok(request.options && anyIs(request.options, PodSandboxConfigSchema));
    const decoded = anyUnpack(request.options, PodSandboxConfigSchema);
    assert.equal(decoded?.hostname, 'h');
    assert.equal(decoded?.metadata?.name, 'p');
    assert.equal(request.netnsPath, '/run/netns/n1');
    assert.equal(request.sandboxer, 'kuasar');
  });

  test('sandboxer is field 10 in Create but field 2 in Update', () => {
    const create10 = new BinaryWriter().tag(1, 2).string('s').tag(10, 2).string('kuasar').finish();
    assert.equal(fromBinary(ControllerCreateRequestSchema, create10).sandboxer, 'kuasar');

    const update = new BinaryWriter()
      .tag(1, 2)
      .string('s')
      .tag(2, 2)
      .string('kuasar')
      .tag(3, 2)
      .fork()
      .tag(1, 2)
      .string('s')
      .join()
      .tag(4, 2)
      .string('labels')
      .finish();
    const decoded = fromBinary(ControllerUpdateRequestSchema, update);
    assert.equal(decoded.sandboxer, 'kuasar');
    assert.equal(decoded.sandbox?.sandboxId, 's');
    assert.deepEqual(decoded.fields, ['labels']);
  });

  test('Start answers address=5 and version=6', () => {
    const bytes = toBinary(
      ControllerStartResponseSchema,
      create(ControllerStartResponseSchema, { sandboxId: 's', address: 'ttrpc+unix:///run/k/s.sock', version: 3 }),
    );
    const expected = new BinaryWriter().tag(1, 2).string('s').tag(5, 2).string('ttrpc+unix:///run/k/s.sock').tag(6, 0).uint32(3).finish();
    assert.deepEqual(bytes, expected);
  });

  test("a Sandbox whose created_at is Go's zero time decodes", () => {
    const goZero = -62135596800n;
    const bytes = new BinaryWriter()
      .tag(1, 2)
      .string('s')
      .tag(5, 2)
      .fork()
      .tag(1, 0)
      .int64(goZero)
      .join()
      .tag(10, 2)
      .string('kuasar')
      .finish();
    const sandbox = fromBinary(SandboxSchema, bytes);
    assert.equal(sandbox.createdAt?.seconds, goZero);
    assert.equal(timestampDate(sandbox.createdAt!).getUTCFullYear(), 1);
  });
});

describe('Task API wire format', () => {
  test('CreateTaskRequest with runc Options naming the task API endpoint', () => {
    const optionsBytes = new BinaryWriter().tag(12, 2).string('ttrpc+unix:///t.sock').tag(13, 0).uint32(3).finish();
    const ours = create(OptionsSchema, { taskApiAddress: 'ttrpc+unix:///t.sock', taskApiVersion: 3 });
    assert.deepEqual(toBinary(OptionsSchema, ours), optionsBytes);

    const bytes = new BinaryWriter()
      .tag(1, 2)
      .string('c1')
      .tag(2, 2)
      .string('/run/bundle/c1')
      .tag(3, 2)
      .fork()
      .tag(1, 2)
      .string('overlay')
      .tag(4, 2)
      .string('lowerdir=/a')
      .join()
      .tag(6, 2)
      .string('/fifo/c1-stdout')
      .tag(10, 2)
      .fork()
      .tag(1, 2)
      .string('containerd.runc.v1.Options')
      .tag(2, 2)
      .bytes(optionsBytes)
      .join()
      .finish();
    const request = fromBinary(CreateTaskRequestSchema, bytes);
    assert.equal(request.bundle, '/run/bundle/c1');
    assert.equal(request.rootfs[0]?.type, 'overlay');
    assert.deepEqual(request.rootfs[0]?.options, ['lowerdir=/a']);
    assert.equal(request.stdout, '/fifo/c1-stdout');
    const runc = request.options && anyUnpack(request.options, OptionsSchema);
    assert.equal(runc?.taskApiAddress, 'ttrpc+unix:///t.sock');
    assert.equal(runc?.taskApiVersion, 3);
  });

  test('StateResponse status=4 uses containerd.v1.types.Status, exec_id=11', () => {
    const bytes = new BinaryWriter().tag(3, 0).uint32(7).tag(4, 0).int32(3).tag(9, 0).uint32(1).tag(11, 2).string('e1').finish();
    const state = fromBinary(StateResponseSchema, bytes);
    assert.equal(state.status, Status.STOPPED);
    assert.equal(state.pid, 7);
    assert.equal(state.exitStatus, 1);
    assert.equal(state.execId, 'e1');
  });

  test('v2 and v3 services have the same 17 methods and share message types', () => {
    const v2 = TaskV2.methods.map((m) => `${m.name}(${m.input.typeName})${m.output.typeName}`);
    const v3 = TaskV3.methods.map((m) => `${m.name}(${m.input.typeName})${m.output.typeName}`);
    assert.equal(v3.length, 17);
    assert.deepEqual(v2, v3);
    assert.equal(TaskV2.typeName, 'containerd.task.v2.Task');
    assert.equal(TaskV3.typeName, 'containerd.task.v3.Task');
  });

  test('cgroup metrics: v2 memory is field 4 (3 unused), v1 memory usage is field 33', () => {
    const v2 = fromBinary(
      CgroupV2MetricsSchema,
      new BinaryWriter()
        .tag(4, 2)
        .fork()
        .tag(32, 0)
        .uint64(4096n)
        .tag(13, 0)
        .uint64(1024n)
        .join()
        .tag(8, 2)
        .fork()
        .tag(5, 0)
        .uint64(1n)
        .join()
        .finish(),
    );
    assert.equal(v2.memory?.usage, 4096n);
    assert.equal(v2.memory?.inactiveFile, 1024n);
    assert.equal(v2.memoryEvents?.oomKill, 1n);

    const v1 = fromBinary(
      CgroupV1MetricsSchema,
      new BinaryWriter()
        .tag(3, 2)
        .fork()
        .tag(1, 2)
        .fork()
        .tag(1, 0)
        .uint64(99n)
        .join()
        .join()
        .tag(4, 2)
        .fork()
        .tag(33, 2)
        .fork()
        .tag(2, 0)
        .uint64(2048n)
        .join()
        .join()
        .finish(),
    );
    assert.equal(v1.cpu?.usage?.total, 99n);
    assert.equal(v1.memory?.usage?.usage, 2048n);
  });
});

describe('events and streaming wire format', () => {
  test('an Envelope carries a TaskExit under its full name', () => {
    const exit = create(TaskExitSchema, { containerId: 'c', id: 'c', pid: 9, exitStatus: 137 });
    // The form containerd's own shims send: the bare full name as type_url.
    const event = create(AnySchema, { typeUrl: TaskExitSchema.typeName, value: toBinary(TaskExitSchema, exit) });
    assert.equal(event.typeUrl, 'containerd.events.TaskExit');
    const envelope = fromBinary(
      EnvelopeSchema,
      toBinary(EnvelopeSchema, create(EnvelopeSchema, { namespace: 'k8s.io', topic: '/tasks/exit', event })),
    );
    assert.equal(envelope.topic, '/tasks/exit');
    assert.equal(anyUnpack(envelope.event!, TaskExitSchema)?.exitStatus, 137);
    assert.equal(TaskOOMSchema.typeName, 'containerd.events.TaskOOM');
    assert.equal(Events.method.forward.name, 'Forward');
    assert.equal(Events.typeName, 'containerd.services.events.ttrpc.v1.Events');
  });

  test('the Streaming service is bidirectional over Any', () => {
    assert.equal(Streaming.typeName, 'containerd.services.streaming.v1.Streaming');
    assert.equal(Streaming.method.stream.methodKind, 'bidi_streaming');
    assert.equal(StreamInitSchema.typeName, 'containerd.services.streaming.v1.StreamInit');
    assert.equal(DataSchema.typeName, 'containerd.types.transfer.Data');
    const window = toBinary(WindowUpdateSchema, create(WindowUpdateSchema, { update: 65536 }));
    assert.deepEqual(window, new BinaryWriter().tag(1, 0).int32(65536).finish());
  });
});
