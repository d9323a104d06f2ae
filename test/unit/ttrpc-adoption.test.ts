// Handing a ttrpc server's sockets to another server (as kuasard does across a restart, through
// its fd keeper): the hooks that reveal each socket, and adoption of a listener and of live
// connections, whose clients go on as if nothing happened.
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, unlinkSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, afterEach, before, describe, it } from 'node:test';
import { RequestSchema, ResponseSchema } from '../../src/api/ttrpc/ttrpc_pb.js';
import { Code } from '../../src/base/errors.js';
import { passedDescriptors, rightsMessage, rightsSpace } from '../../src/linux/cmsg.js';
import { closeFd } from '../../src/linux/libc/files.js';
import { acceptNow, connectUnix, listenUnix, receiveMessage, sendMessage } from '../../src/linux/libc/sockets.js';
import { FrameDecoder, FrameType, encodeHeader, type Frame } from '../../src/rpc/ttrpc/frame.js';
import { TtrpcClient, TtrpcServer, type PendingCall, type TtrpcServerOptions } from '../../src/rpc/ttrpc/index.js';

const SERVICE = 'test.v1.Echo';
const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString();
const bytes = (value: string): Uint8Array => Buffer.from(value);

const fdOf = (owner: net.Socket | net.Server): number => (owner as unknown as { _handle: { fd: number } })._handle.fd;

let dir: string;
let counter = 0;
const nextPath = (): string => join(dir, `s${++counter}.sock`);

/**
 * A second descriptor for the open file behind `fd`, made as kuasard's fd keeper makes its copies:
 * passed through a unix socket (SCM_RIGHTS). The file stays open until both are closed.
 */
function keptCopy(fd: number): number {
  const path = nextPath();
  const listener = listenUnix(path);
  const sender = connectUnix(path, 'stream');
  const receiver = acceptNow(listener)!;
  try {
    sendMessage(sender, Uint8Array.of(0), rightsMessage([fd]));
    const [copy] = passedDescriptors(receiveMessage(receiver, 1, rightsSpace(1)).control);
    return copy!;
  } finally {
    for (const end of [sender, receiver, listener]) closeFd(end);
    unlinkSync(path);
  }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ttrpc-adoption-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('ttrpc server hand-over', () => {
  const servers: TtrpcServer[] = [];
  const clients: TtrpcClient[] = [];

  /** A server whose Echo answers `<label>:<payload>`, so a test sees which server answered. */
  function echoServer(label: string, options: TtrpcServerOptions = {}): TtrpcServer {
    const server = new TtrpcServer(options);
    server.register(SERVICE, { unary: { Echo: async ({ payload }) => bytes(`${label}:${text(payload)}`) } });
    servers.push(server);
    return server;
  }

  async function connect(path: string): Promise<TtrpcClient> {
    const client = await TtrpcClient.connect(path, { timeoutMs: 5_000 });
    clients.push(client);
    return client;
  }

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    for (const server of servers.splice(0)) await server.close();
  });

  it('tells onListening about its listener and onAccepted about each connection before reading from it', async () => {
    const listening: net.Server[] = [];
    const accepted: { socket: net.Socket; bytesRead: number }[] = [];
    const path = nextPath();
    const server = echoServer('a', {
      onListening: (listener) => listening.push(listener),
      onAccepted: (socket) => accepted.push({ socket, bytesRead: socket.bytesRead }),
    });
    await server.listen(path);
    assert.equal(listening.length, 1);
    assert.equal(typeof fdOf(listening[0]!), 'number');

    const client = await connect(path);
    assert.equal(text(await client.call(SERVICE, 'Echo', bytes('x'))), 'a:x');
    await connect(path);
    await sleep(20);
    assert.equal(accepted.length, 2, 'one call per accepted connection');
    assert.deepEqual(
      accepted.map((a) => a.bytesRead),
      [0, 0],
      'told before anything was read',
    );
  });

  it('lets a second server adopt a live connection: the client goes on, on the same connection', async () => {
    const accepted: net.Socket[] = [];
    const path = nextPath();
    const first = echoServer('first', { onAccepted: (socket) => accepted.push(socket) });
    await first.listen(path);
    const client = await connect(path);
    assert.equal(text(await client.call(SERVICE, 'Echo', bytes('1'))), 'first:1');
    assert.equal(text(await client.call(SERVICE, 'Echo', bytes('2'))), 'first:2');

    // The hand-over: a duplicate of the connection outlives the first server.
    const kept = keptCopy(fdOf(accepted[0]!));
    await first.close();
    const second = echoServer('second');
    const adopted = second.adoptConnection(kept);
    assert.ok(adopted instanceof net.Socket);
    // Stream ids go on from 5: the second server never saw 1 and 3.
    assert.equal(text(await client.call(SERVICE, 'Echo', bytes('3'))), 'second:3');
    assert.equal(text(await client.call(SERVICE, 'Echo', bytes('4'))), 'second:4');
  });

  it('adopts a listening socket: a connect queued before is served, close() removes the socket file', async () => {
    const path = nextPath();
    const listenerFd = listenUnix(path, 16);
    // Nobody accepts yet: the connect completes in the backlog and the call waits.
    const client = await connect(path);
    const answer = client.call(SERVICE, 'Echo', bytes('queued'));

    const server = echoServer('adopter');
    await server.adoptListener(listenerFd, path);
    assert.equal(text(await answer), 'adopter:queued');
    assert.equal(text(await (await connect(path)).call(SERVICE, 'Echo', bytes('new'))), 'adopter:new');

    await server.close();
    assert.equal(existsSync(path), false);
  });

  it('reports unary calls as they start and settle, and a second server runs a resumable one again and answers any other Unavailable', async () => {
    const accepted: net.Socket[] = [];
    const started: PendingCall[] = [];
    const settled: PendingCall[] = [];
    const path = nextPath();
    const first = new TtrpcServer({
      onAccepted: (socket) => accepted.push(socket),
      resumable: (service, method) => service === SERVICE && method === 'Wait',
      onPendingCall: (socket, call) => {
        assert.equal(socket, accepted[0]);
        started.push(call);
      },
      onPendingCallSettled: (_socket, call) => settled.push(call),
    });
    servers.push(first);
    const never = new Promise<Uint8Array>(() => undefined);
    const wait = async ({ payload }: { payload: Uint8Array }) => (text(payload) === 'exited' ? payload : never);
    first.register(SERVICE, { unary: { Echo: async ({ payload }) => payload, Wait: wait, Hang: () => never } });
    await first.listen(path);
    const client = await connect(path);
    await client.call(SERVICE, 'Echo', bytes('not resumable'));
    await client.call(SERVICE, 'Wait', bytes('exited'));
    assert.deepEqual(
      started.map((c) => [c.streamId, c.request !== undefined]),
      [
        [1, false],
        [3, true],
      ],
      'every unary call is reported, a resumable one with its request',
    );
    assert.deepEqual(settled, started, 'and settled once answered');
    const waiting = client.call(SERVICE, 'Wait', bytes('container-1'));
    const hanging = client.call(SERVICE, 'Hang', bytes('anything'));
    await sleep(20);
    const [pending, inflight] = started.slice(2);
    assert.equal(pending?.streamId, 5);
    const request = fromBinary(RequestSchema, pending!.request!);
    assert.deepEqual([request.service, request.method, text(request.payload)], [SERVICE, 'Wait', 'container-1']);
    assert.deepEqual(inflight, { streamId: 7 }, 'a call that cannot run again is reported by its stream id');
    assert.equal(settled.length, 2);

    // The first server goes away without answering; the second runs the call again.
    const kept = keptCopy(fdOf(accepted[0]!));
    await first.close();
    assert.deepEqual(new Set(settled.slice(2)), new Set([pending, inflight]), 'calls dropped with their connection are settled too');
    const reportedBySecond: number[] = [];
    const second = new TtrpcServer({
      resumable: (_service, method) => method === 'Wait',
      onPendingCall: (_socket, call) => reportedBySecond.push(call.streamId),
    });
    servers.push(second);
    second.register(SERVICE, {
      unary: { Wait: async ({ payload }) => bytes(`second:${text(payload)}`), Echo: async ({ payload }) => payload },
    });
    second.adoptConnection(kept, [pending!, inflight!]);
    assert.equal(text(await waiting), 'second:container-1', 'the original call is answered');
    await assert.rejects(
      hanging,
      { code: Code.Unavailable, message: /whether it took effect is unknown/ },
      'the call whose outcome is unknown is answered Unavailable',
    );
    assert.equal(text(await client.call(SERVICE, 'Echo', bytes('next'))), 'next', 'later calls go on after the resumed id');
    assert.deepEqual(reportedBySecond, [9], 'calls taken over were reported by the first server, not again; new ones are');
  });

  it('takes any odd stream id first on an adopted connection and data on streams it never saw, then holds the client to increasing odd ids', async () => {
    const path = nextPath();
    const plain = net.createServer();
    plain.listen(path);
    await once(plain, 'listening');
    const peer = net.createConnection(path);
    const [serverSide] = (await once(plain, 'connection')) as [net.Socket];
    const server = echoServer('adopter');
    server.adoptConnection(keptCopy(fdOf(serverSide)));
    serverSide.destroy();
    plain.close();

    const frames = framesOf(peer);
    const request = (streamId: number, payload: string) => {
      const body = toBinary(RequestSchema, create(RequestSchema, { service: SERVICE, method: 'Echo', payload: bytes(payload) }));
      peer.write(Buffer.concat([encodeHeader(streamId, FrameType.Request, 0, body.length), body]));
    };
    const response = async (streamId: number) => {
      const frame = await frames.next();
      assert.equal(frame.streamId, streamId);
      assert.equal(frame.type, FrameType.Response);
      return fromBinary(ResponseSchema, frame.payload);
    };

    // Data on a stream the earlier process opened (a stdio stream, say) is no violation here.
    peer.write(encodeHeader(45, FrameType.Data, 0, 0));
    request(41, 'late');
    assert.equal(text((await response(41)).payload), 'adopter:late');
    request(43, 'next');
    assert.equal(text((await response(43)).payload), 'adopter:next');
    // Going back is a protocol violation: answered, then the connection ends.
    const closed = once(peer, 'close');
    request(39, 'back');
    assert.equal((await response(39)).status?.code, Code.InvalidArgument);
    await closed;
  });
});

/** The frames a raw peer receives, one at a time. */
function framesOf(socket: net.Socket): { next(): Promise<Frame> } {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  let wake: (() => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    for (const item of decoder.push(chunk)) if (item.kind === 'frame') frames.push(item.frame);
    wake?.();
  });
  return {
    async next() {
      while (frames.length === 0) await new Promise<void>((resolve) => (wake = resolve));
      return frames.shift()!;
    },
  };
}
