// The typed ttrpc layer with the generated containerd services: Task (unary, served under the
// v3 and v2 names) and Streaming (bidirectional stream of Any).

import { create, fromBinary, toBinary, type MessageInitShape } from '@bufbuild/protobuf';
import { AnySchema, anyPack, anyUnpack, type Any } from '@bufbuild/protobuf/wkt';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Task as TaskV2 } from '../../src/api/containerd/runtime/task/v2/shim_pb.js';
import { CreateTaskResponseSchema, Task as TaskV3 } from '../../src/api/containerd/runtime/task/v3/shim_pb.js';
import { StreamInitSchema, Streaming } from '../../src/api/containerd/services/streaming/v1/streaming_pb.js';
import { Status } from '../../src/api/containerd/types/task/task_pb.js';
import { Code, RuntimeError, notFound } from '../../src/base/errors.js';
import { TtrpcClient, TtrpcServer, registerService, typedClient, type TypedServerStream } from '../../src/rpc/ttrpc/index.js';

const TASK_NAMES = ['containerd.task.v3.Task', 'containerd.task.v2.Task'];

async function expectCode(promise: Promise<unknown>, code: Code, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof RuntimeError, String(err));
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

describe('typed ttrpc services', () => {
  let dir: string;
  let server: TtrpcServer;
  let client: TtrpcClient;
  const seenNamespaces: string[][] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ttrpc-typed-'));
    server = new TtrpcServer();
    registerService(
      server,
      TaskV3,
      {
        state: async (request, { metadata }) => {
          seenNamespaces.push(metadata['containerd-namespace-ttrpc'] ?? []);
          if (request.id !== 'c1') throw notFound(`container ${request.id}`);
          return { id: request.id, execId: request.execId, pid: 42, status: Status.RUNNING, bundle: '/b/c1' };
        },
        // A fully built message is accepted as well as an init object.
        create: async (request) => create(CreateTaskResponseSchema, { pid: request.rootfs.length + 100 }),
      },
      { names: TASK_NAMES },
    );
    // A class instance works as the implementation: its methods keep their `this`.
    class StreamingService {
      private readonly greeting = 'hello';

      /** Answers the StreamInit with its id, then echoes every other message. */
      async stream(stream: TypedServerStream<Any, MessageInitShape<typeof AnySchema>>): Promise<void> {
        for await (const message of stream) {
          const init = anyUnpack(message, StreamInitSchema);
          const answer = init && anyPack(StreamInitSchema, create(StreamInitSchema, { id: `${this.greeting} ${init.id}` }));
          await stream.send(answer ?? message);
        }
      }
    }
    registerService(server, Streaming, new StreamingService());
    const path = join(dir, 'task.sock');
    await server.listen(path);
    client = await TtrpcClient.connect(path);
  });

  after(async () => {
    client.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('calls unary methods with generated messages on both Task names', async () => {
    const v3 = typedClient(client, TaskV3);
    const state = await v3.state({ id: 'c1', execId: 'e1' }, { metadata: { 'containerd-namespace-ttrpc': 'k8s.io' } });
    assert.equal(state.$typeName, 'containerd.task.v3.StateResponse');
    assert.deepEqual([state.id, state.execId, state.pid, state.status, state.bundle], ['c1', 'e1', 42, Status.RUNNING, '/b/c1']);
    assert.deepEqual(seenNamespaces.at(-1), ['k8s.io']);

    const v2 = typedClient(client, TaskV2);
    assert.equal((await v2.state({ id: 'c1' })).pid, 42);
    const created = await v2.create({ id: 'c2', rootfs: [{ type: 'overlay' }, { type: 'bind' }] });
    assert.equal(created.pid, 102);
    // The same descriptor may be called by another name.
    const renamed = typedClient(client, TaskV3, { serviceName: 'containerd.task.v2.Task' });
    assert.equal((await renamed.state({ id: 'c1' })).pid, 42);
  });

  it('maps handler errors and unimplemented methods to status codes', async () => {
    const task = typedClient(client, TaskV3);
    await expectCode(task.state({ id: 'missing' }), Code.NotFound, /^container missing: not found$/);
    await expectCode(task.pause({ id: 'c1' }), Code.Unimplemented, /Pause/);
  });

  it('answers InvalidArgument when a request does not decode as the input type', async () => {
    await expectCode(
      client.call('containerd.task.v3.Task', 'State', Uint8Array.of(0x0a, 0x05, 0x61)),
      Code.InvalidArgument,
      /containerd\.task\.v3\.Task\/State: invalid containerd\.task\.v3\.StateRequest/,
    );
  });

  it('serves a bidirectional stream of Any as containerd opens it', async () => {
    const stream = client.openStream('containerd.services.streaming.v1.Streaming', 'Stream');
    const init = anyPack(StreamInitSchema, create(StreamInitSchema, { id: 'c1-stdout' }));
    await stream.send(toBinary(AnySchema, init));
    const data = create(AnySchema, { typeUrl: 'containerd.types.transfer.Data', value: Uint8Array.of(0x0a, 0x01, 0x78) });
    await stream.send(toBinary(AnySchema, data));
    stream.closeSend();
    const received = [];
    for await (const payload of stream) received.push(fromBinary(AnySchema, payload));
    assert.equal(received.length, 2);
    assert.equal(anyUnpack(received[0]!, StreamInitSchema)?.id, 'hello c1-stdout');
    assert.equal(received[1]!.typeUrl, 'containerd.types.transfer.Data');
    assert.deepEqual([...received[1]!.value], [0x0a, 0x01, 0x78]);
    assert.equal(await stream.done, undefined);
  });
});
