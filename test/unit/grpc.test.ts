import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { create, type MessageShape } from '@bufbuild/protobuf';
import { anyPack, anyUnpack, timestampFromDate } from '@bufbuild/protobuf/wkt';
import { Controller } from '../../src/api/containerd/services/sandbox/v1/sandbox_pb.js';
import {
  ContainerEventResponseSchema,
  ContainerEventType,
  PodSandboxConfigSchema,
  RuntimeService,
} from '../../src/api/cri/runtime/v1/api_pb.js';
import { Code, RuntimeError, notFound, unimplemented } from '../../src/base/errors.js';
import {
  GrpcChannel,
  addGrpcService,
  createGrpcClient,
  fromServiceError,
  grpcServiceDefinition,
  type GrpcCallContext,
  type GrpcUnaryHandlers,
} from '../../src/rpc/grpc.js';

const notUsed = async (): Promise<never> => {
  throw unimplemented('not used by this test');
};

/** A controller that knows one sandbox, "pod-1", and records what it saw. */
function fakeController(seen: { contexts: GrpcCallContext[]; waitAborted: Promise<unknown> }) {
  let onWaitAborted!: (reason: unknown) => void;
  seen.waitAborted = new Promise((resolve) => (onWaitAborted = resolve));
  const handlers: GrpcUnaryHandlers<typeof Controller> = {
    async create(request, context) {
      seen.contexts.push(context);
      if (request.sandboxId === 'boom') throw new Error('disk on fire');
      const config = request.options && anyUnpack(request.options, PodSandboxConfigSchema);
      return { sandboxId: `${request.sandboxId}/${config?.metadata?.name ?? 'no-config'}/${request.netnsPath}` };
    },
    async status(request) {
      if (request.sandboxId !== 'pod-1') throw notFound(`sandbox ${request.sandboxId}`);
      return {
        sandboxId: 'pod-1',
        pid: 42,
        state: 'SANDBOX_READY',
        info: { kind: 'runc' },
        createdAt: timestampFromDate(new Date(1_700_000_000_123)),
        address: 'ttrpc+unix:///run/kuasar/pod-1/task.sock',
        version: 3,
      };
    },
    wait(_request, context) {
      // Held open until the client gives up, as containerd's Wait is.
      return new Promise((_resolve, reject) => {
        context.signal.addEventListener('abort', () => {
          onWaitAborted(context.signal.reason);
          reject(context.signal.reason);
        });
      });
    },
    update: async (request) => {
      assert.equal(request.sandboxer, 'kuasar-runc');
      return {};
    },
    start: notUsed,
    // Not async: throws before any promise exists.
    platform(request) {
      throw notFound(`sandbox ${request.sandboxId}`);
    },
    stop: notUsed,
    shutdown: notUsed,
    metrics: notUsed,
  };
  return handlers;
}

describe('grpc helper', () => {
  let dir: string;
  let socket: string;
  let server: grpc.Server;
  const seen = { contexts: [] as GrpcCallContext[], waitAborted: Promise.resolve() as Promise<unknown> };
  const errorsSeen: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'grpc-test-'));
    socket = join(dir, 'controller.sock');
    server = new grpc.Server();
    addGrpcService(server, Controller, fakeController(seen), { onError: (path) => errorsSeen.push(path) });
    // A hand-written streaming method, to exercise the client's server-streaming support.
    server.addService(grpcServiceDefinition(RuntimeService), {
      getContainerEvents(call: grpc.ServerWritableStream<unknown, MessageShape<typeof ContainerEventResponseSchema>>) {
        for (const id of ['c1', 'c2']) {
          call.write(
            create(ContainerEventResponseSchema, {
              containerId: id,
              containerEventType: ContainerEventType.CONTAINER_STARTED_EVENT,
            }),
          );
        }
        call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: 'event buffer full' });
      },
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (error) => (error ? reject(error) : resolve())),
    );
  });

  after(async () => {
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  });

  test('definition paths are /<service type name>/<method>', () => {
    const definition = grpcServiceDefinition(Controller);
    assert.equal(definition.create?.path, '/containerd.services.sandbox.v1.Controller/Create');
    assert.equal(definition.update?.path, '/containerd.services.sandbox.v1.Controller/Update');
    assert.equal(Object.keys(definition).length, 9);
    const runtime = grpcServiceDefinition(RuntimeService);
    assert.equal(runtime.getContainerEvents?.responseStream, true);
    assert.equal(runtime.runPodSandbox?.responseStream, false);
  });

  test('unary round trip with Any, maps, timestamps and channel metadata', async () => {
    const channel = new GrpcChannel(`unix://${socket}`, { metadata: { 'containerd-namespace': 'k8s.io' } });
    try {
      const client = channel.client(Controller);
      const config = create(PodSandboxConfigSchema, { metadata: { name: 'web', uid: 'u1', namespace: 'default' } });
      const created = await client.create(
        { sandboxId: 'pod-1', netnsPath: '/var/run/netns/cni-1', options: anyPack(PodSandboxConfigSchema, config) },
        { metadata: { 'x-extra': 'yes' } },
      );
      assert.equal(created.sandboxId, 'pod-1/web//var/run/netns/cni-1');
      const context = seen.contexts.at(-1);
      assert.equal(context?.metadata['containerd-namespace'], 'k8s.io');
      assert.equal(context?.metadata['x-extra'], 'yes');
      assert.equal(context?.path, '/containerd.services.sandbox.v1.Controller/Create');

      const status = await client.status({ sandboxId: 'pod-1' });
      assert.equal(status.$typeName, 'containerd.services.sandbox.v1.ControllerStatusResponse');
      assert.equal(status.pid, 42);
      assert.deepEqual(status.info, { kind: 'runc' });
      assert.equal(status.createdAt?.seconds, 1_700_000_000n);
      assert.equal(status.createdAt?.nanos, 123_000_000);
      assert.equal(status.version, 3);

      // A message made with create() is accepted as well as a plain init object.
      await client.update(create(Controller.method.update.input, { sandboxId: 'pod-1', sandboxer: 'kuasar-runc' }));
    } finally {
      channel.close();
    }
  });

  test('server errors arrive as RuntimeError with code and message', async () => {
    const client = createGrpcClient(Controller, `unix://${socket}`);
    try {
      await assert.rejects(client.status({ sandboxId: 'nope' }), (error: unknown) => {
        assert.ok(error instanceof RuntimeError);
        assert.equal(error.code, Code.NotFound);
        assert.equal(error.message, 'sandbox nope: not found');
        return true;
      });
      await assert.rejects(client.start({ sandboxId: 'pod-1' }), { code: Code.Unimplemented });
      await assert.rejects(client.platform({ sandboxId: 'p9' }), { code: Code.NotFound, message: 'sandbox p9: not found' });
      // A non-RuntimeError is a bug: Internal, with its message but nothing else.
      await assert.rejects(client.create({ sandboxId: 'boom' }), { code: Code.Internal, message: 'disk on fire' });
      assert.ok(errorsSeen.includes('/containerd.services.sandbox.v1.Controller/Create'));
    } finally {
      client.close();
    }
  });

  test("request bytes that do not decode are InvalidArgument, not the server's fault", async () => {
    const client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
    try {
      const identity = (data: Buffer) => data;
      const error = await new Promise<grpc.ServiceError | null>((resolve) =>
        client.makeUnaryRequest('/containerd.services.sandbox.v1.Controller/Status', identity, identity, Buffer.from([0]), (err) =>
          resolve(err),
        ),
      );
      assert.equal(error?.code, grpc.status.INVALID_ARGUMENT);
      assert.match(error?.details ?? '', /Controller\/Status: invalid containerd\.services\.sandbox\.v1\.ControllerStatusRequest/);
    } finally {
      client.close();
    }
  });

  test('a deadline fails the call with DeadlineExceeded and aborts the handler', async () => {
    const client = createGrpcClient(Controller, `unix://${socket}`);
    try {
      const started = Date.now();
      await assert.rejects(client.wait({ sandboxId: 'pod-1' }, { timeoutMs: 150 }), { code: Code.DeadlineExceeded });
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 100 && elapsed < 2000, `took ${elapsed} ms`);
      const reason = await seen.waitAborted;
      assert.ok(reason instanceof RuntimeError && reason.code === Code.Cancelled);
    } finally {
      client.close();
    }
  });

  test('an AbortSignal cancels the call', async () => {
    const client = createGrpcClient(Controller, `unix://${socket}`);
    try {
      const abort = new AbortController();
      const pending = client.wait({ sandboxId: 'pod-1' }, { signal: abort.signal });
      setTimeout(() => abort.abort(), 50);
      await assert.rejects(pending, { code: Code.Cancelled });
    } finally {
      client.close();
    }
  });

  test('server streaming yields messages, then the stream error as RuntimeError', async () => {
    const client = createGrpcClient(RuntimeService, `unix://${socket}`);
    try {
      const ids: string[] = [];
      await assert.rejects(
        (async () => {
          for await (const event of client.getContainerEvents({})) ids.push(event.containerId);
        })(),
        { code: Code.ResourceExhausted, message: 'event buffer full' },
      );
      assert.deepEqual(ids, ['c1', 'c2']);
    } finally {
      client.close();
    }
  });

  test('an absent server is Unavailable; waitForReady times out', async () => {
    const target = `unix://${join(dir, 'nobody.sock')}`;
    const channel = new GrpcChannel(target);
    try {
      await assert.rejects(channel.client(Controller).status({ sandboxId: 'x' }), { code: Code.Unavailable });
      await assert.rejects(channel.waitForReady(100), { code: Code.DeadlineExceeded });
    } finally {
      channel.close();
    }
  });

  test('fromServiceError keeps known codes and maps the rest to Unknown', () => {
    const unauthenticated = fromServiceError({ code: 16, details: 'who are you' });
    assert.equal(unauthenticated.code, Code.Unknown);
    assert.equal(unauthenticated.message, 'who are you');
    assert.equal(fromServiceError({ code: 9, details: 'not yet' }).code, Code.FailedPrecondition);
  });
});
