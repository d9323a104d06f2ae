// The Streaming service as containerd uses it for streaming io: StreamInit and its acknowledgement,
// then Data within WindowUpdate credits, both ways, over a real ttrpc connection.
import { fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { AnySchema, type Any } from '@bufbuild/protobuf/wkt';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { StreamInitSchema, Streaming } from '../../src/api/containerd/services/streaming/v1/streaming_pb.js';
import { DataSchema, WindowUpdateSchema } from '../../src/api/containerd/types/transfer/streaming_pb.js';
import { Code, RuntimeError } from '../../src/base/errors.js';
import { StreamRegistry } from '../../src/base/streams.js';
import { TtrpcClient, TtrpcServer, registerService, type ClientStream } from '../../src/rpc/ttrpc/index.js';
import { streamingHandlers, type StreamingScope } from '../../src/services/streaming.js';
import { packAny, unpackAny } from '../../src/services/wkt.js';

const SERVICE = 'containerd.services.streaming.v1.Streaming';

const pack = <S extends DescMessage>(schema: S, init: MessageInitShape<S>) => toBinary(AnySchema, packAny(schema, init));

function unpack<S extends DescMessage>(any: Any, schema: S): MessageShape<S> {
  assert.equal(any.typeUrl, schema.typeName, 'packed as containerd packs it: the bare type name');
  return unpackAny(any, schema)!;
}

/** containerd's side of one stream: opened, StreamInit sent, acknowledgement read. */
async function openStream(client: TtrpcClient, id: string) {
  const stream = client.openStream(SERVICE, 'Stream');
  const messages = stream[Symbol.asyncIterator]();
  await stream.send(pack(StreamInitSchema, { id }));
  const ack = await messages.next();
  assert.equal(ack.done, false, 'the server acknowledges the StreamInit');
  const next = async (): Promise<Any | undefined> => {
    const item = await messages.next();
    return item.done ? undefined : fromBinary(AnySchema, item.value);
  };
  return { stream, next };
}

/** Resolves with what `promise` resolves to, or 'nothing' if that takes longer than `ms`. */
const within = <T>(promise: Promise<T>, ms: number) =>
  Promise.race([promise, new Promise<'nothing'>((resolve) => setTimeout(() => resolve('nothing'), ms))]);

describe('the Streaming service', () => {
  let dir: string;
  let server: TtrpcServer<StreamingScope>;
  let client: TtrpcClient;
  const registry = new StreamRegistry();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kuasar-streaming-'));
    server = new TtrpcServer({ scope: { streams: registry, log: pino({ level: 'silent' }) } });
    registerService(server, Streaming, streamingHandlers());
    await server.listen(join(dir, 'task.sock'));
    client = await TtrpcClient.connect(join(dir, 'task.sock'));
  });

  after(async () => {
    client.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('sends stdout in Data messages within the credits containerd grants, then ends the stream', async () => {
    const { stream, next } = await openStream(client, 'c1-stdout');
    const output = (await registry.take('c1-stdout', 1000)) as Writable;
    output.end(Buffer.alloc(100_000, 'o'));
    await stream.send(pack(WindowUpdateSchema, { update: 65_536 }));
    let received = 0;
    while (received < 65_536) {
      const data = unpack((await next())!, DataSchema);
      assert.ok(data.data.length <= 32_768, 'at most 32 KiB per message');
      received += data.data.length;
    }
    assert.equal(received, 65_536, 'never more than granted');
    const pending = next();
    assert.equal(await within(pending, 100), 'nothing', 'waits for credits');
    await stream.send(pack(WindowUpdateSchema, { update: 65_536 }));
    for (let message = await pending; message; message = await next()) received += unpack(message, DataSchema).data.length;
    assert.equal(received, 100_000);
    assert.equal(await stream.done, undefined, 'ended with a closing Data frame');
    stream.closeSend();
  });

  it("grants credits for stdin and ends the process's stream when containerd closes its side", async () => {
    const { stream, next } = await openStream(client, 'c1-stdin');
    const input = (await registry.take('c1-stdin', 1000)) as Readable;
    assert.equal(unpack((await next())!, WindowUpdateSchema).update, 65_536);
    await stream.send(pack(DataSchema, { data: Buffer.from('hello ') }));
    await stream.send(pack(DataSchema, { data: Buffer.from('world') }));
    stream.closeSend();
    let text = '';
    for await (const chunk of input) text += (chunk as Buffer).toString();
    assert.equal(text, 'hello world');
    assert.equal(await stream.done, undefined);
  });

  it('grants more stdin credits as the process consumes what arrived', async () => {
    const { stream, next } = await openStream(client, 'c2-stdin');
    const input = (await registry.take('c2-stdin', 1000)) as Readable;
    let granted = unpack((await next())!, WindowUpdateSchema).update;
    let consumed = 0;
    input.on('data', (chunk: Buffer) => (consumed += chunk.length));
    for (let sent = 0; sent < 200_000; ) {
      while (granted - sent <= 0) granted += unpack((await next())!, WindowUpdateSchema).update;
      const size = Math.min(32_768, granted - sent, 200_000 - sent);
      await stream.send(pack(DataSchema, { data: Buffer.alloc(size, 'i') }));
      sent += size;
    }
    stream.closeSend();
    await new Promise((resolve) => input.once('end', resolve));
    assert.equal(consumed, 200_000);
  });

  it('drops a stream that containerd closes before any process took it', async () => {
    const { stream } = await openStream(client, 'c3-stdout');
    assert.equal(registry.pending, 1);
    stream.closeSend();
    await stream.done;
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(registry.pending, 0);
  });

  it('refuses a stream whose first message is not a StreamInit', async () => {
    const stream: ClientStream = client.openStream(SERVICE, 'Stream');
    await stream.send(pack(DataSchema, { data: Buffer.from('x') }));
    await assert.rejects(stream.done, (err: unknown) => err instanceof RuntimeError && err.code === Code.InvalidArgument);
  });
});
