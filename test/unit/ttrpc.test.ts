// ttrpc server and client over real unix sockets in a private temp dir, plus raw-socket peers
// that send exactly the bytes a misbehaving or hand-written peer would.

import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { RequestSchema, ResponseSchema } from '../../src/api/ttrpc/ttrpc_pb.js';
import { Code, RuntimeError, failedPrecondition, notFound } from '../../src/base/errors.js';
import { TtrpcClient, TtrpcServer, type ServerStream } from '../../src/rpc/ttrpc/index.js';
import { MAX_SHORT_CALLS } from '../../src/rpc/ttrpc/server-connection.js';
import { Flag, FrameDecoder, FrameType, MAX_PAYLOAD_LENGTH, encodeHeader, type Frame } from '../../src/rpc/ttrpc/frame.js';

const SERVICE = 'test.v1.Echo';
const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString();
const bytes = (value: string): Uint8Array => Buffer.from(value);

/** A peer speaking raw frames, to send what TtrpcClient never would. */
class RawPeer {
  private readonly decoder = new FrameDecoder();
  private readonly frames: Frame[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;
  readonly closed: Promise<void>;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const item of this.decoder.push(chunk)) {
        assert.equal(item.kind, 'frame', 'the server sent a malformed frame');
        if (item.kind === 'frame') this.frames.push(item.frame);
      }
      this.wake();
    });
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.ended = true;
        this.wake();
        resolve();
      }),
    );
  }

  static async connect(path: string): Promise<RawPeer> {
    const socket = net.createConnection(path);
    await once(socket, 'connect');
    return new RawPeer(socket);
  }

  write(data: Uint8Array): void {
    this.socket.write(data);
  }

  /** Stops reading what the server sends, as a client that only pipelines requests does. */
  pauseReading(): void {
    this.socket.pause();
  }

  resumeReading(): void {
    this.socket.resume();
  }

  frame(streamId: number, type: number, flags: number, payload: Uint8Array = new Uint8Array(0)): void {
    this.write(Buffer.concat([encodeHeader(streamId, type, flags, payload.length), payload]));
  }

  request(
    streamId: number,
    method: string,
    payload: Uint8Array,
    options: { flags?: number; timeoutNano?: bigint; service?: string } = {},
  ): void {
    const request = create(RequestSchema, {
      service: options.service ?? SERVICE,
      method,
      payload,
      timeoutNano: options.timeoutNano ?? 0n,
    });
    this.frame(streamId, FrameType.Request, options.flags ?? 0, toBinary(RequestSchema, request));
  }

  /** The next frame the server sent; fails if the connection closes first. */
  async next(): Promise<Frame> {
    while (this.frames.length === 0) {
      if (this.ended) throw new Error('connection closed before a frame arrived');
      await new Promise<void>((resolve) => (this.waiter = resolve));
    }
    return this.frames.shift()!;
  }

  /** Resolves when the server closes the connection; fails if it sends a frame instead. */
  async expectClosed(): Promise<void> {
    await this.closed;
    assert.deepEqual(this.frames, [], 'the server answered instead of closing');
  }

  end(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }
}

async function expectResponse(peer: RawPeer, streamId: number, code: Code, message?: RegExp): Promise<Uint8Array> {
  const frame = await peer.next();
  assert.equal(frame.streamId, streamId);
  assert.equal(frame.type, FrameType.Response);
  assert.equal(frame.flags, 0);
  const response = fromBinary(ResponseSchema, frame.payload);
  assert.equal(response.status?.code ?? Code.OK, code, response.status?.message);
  if (message) assert.match(response.status?.message ?? '', message);
  return response.payload;
}

async function expectRejection(promise: Promise<unknown>, code: Code, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof RuntimeError, `expected a RuntimeError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

/** Leaves a socket file nobody accepts on, as a process killed while listening does. */
async function leaveStaleSocket(path: string): Promise<void> {
  const child = spawn(process.execPath, ['-e', "require('net').createServer().listen(process.argv[1], () => console.log('ready'))", path], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await once(child.stdout, 'data');
  child.kill('SIGKILL');
  await once(child, 'exit');
}

/** Settles when `signal` aborts, with its reason. */
function aborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(signal.reason);
    else signal.addEventListener('abort', () => resolve(signal.reason), { once: true });
  });
}

/** A promise with its resolver, to let tests decide when a handler may finish. */
function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ttrpc-test-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let socketCounter = 0;
const nextSocketPath = (): string => join(dir, `s${++socketCounter}.sock`);

describe('ttrpc server and client', () => {
  let server: TtrpcServer;
  let path: string;
  let client: TtrpcClient;
  /** Hooks a test sets for handlers to report into. */
  let hooks: {
    release: ReturnType<typeof gate<string>>;
    waiting: ReturnType<typeof gate<AbortSignal>>;
    streamDone: ReturnType<typeof gate<void>>;
  };

  beforeEach(async () => {
    hooks = { release: gate<string>(), waiting: gate<AbortSignal>(), streamDone: gate() };
    server = new TtrpcServer();
    server.register(SERVICE, {
      unary: {
        Echo: async ({ payload }) => payload,
        Metadata: async ({ metadata }) => bytes(JSON.stringify(metadata)),
        Fail: async ({ payload }) => {
          if (text(payload) === 'not-found') throw notFound('container c1');
          throw new Error('disk on fire');
        },
        // Finishes only once Release was called (or its signal aborts): proves concurrency.
        Wait: async ({ signal }) => {
          hooks.waiting.open(signal);
          return bytes(await Promise.race([hooks.release.promise, aborted(signal).then(() => 'aborted')]));
        },
        Release: async ({ payload }) => {
          hooks.release.open(text(payload));
          return new Uint8Array(0);
        },
        Big: async () => new Uint8Array(MAX_PAYLOAD_LENGTH + 1),
      },
      streams: {
        // Bidirectional: answers each message in upper case until the client closes its side.
        Upper: async (stream: ServerStream) => {
          for await (const message of stream) await stream.send(bytes(text(message).toUpperCase()));
          hooks.streamDone.open();
        },
        // Server streaming: the request says how many messages to send.
        Count: async (stream) => {
          for await (const message of stream) {
            for (let i = 1; i <= Number(text(message)); i++) await stream.send(bytes(String(i)));
          }
        },
        // Client streaming: one answer once the client has sent everything.
        Join: async (stream) => {
          const parts: string[] = [];
          for await (const message of stream) parts.push(text(message));
          return bytes(parts.join('+'));
        },
        Broken: async (stream) => {
          await stream.send(bytes('first'));
          throw failedPrecondition('stream went wrong');
        },
      },
    });
    path = nextSocketPath();
    await server.listen(path);
    client = await TtrpcClient.connect(path, { timeoutMs: 5000 });
  });

  afterEach(async () => {
    client.close();
    await server.close();
  });

  /** A fresh connection still gets answers: whatever happened before hurt nobody else. */
  async function assertServerStillServes(): Promise<void> {
    const fresh = await TtrpcClient.connect(path);
    try {
      assert.equal(text(await fresh.call(SERVICE, 'Echo', bytes('still here'))), 'still here');
    } finally {
      fresh.close();
    }
  }

  describe('unary calls', () => {
    it('round-trips a payload', async () => {
      assert.equal(text(await client.call(SERVICE, 'Echo', bytes('hello'))), 'hello');
      assert.equal(text(await client.call(SERVICE, 'Echo', new Uint8Array(0))), '');
    });

    it('hands the request metadata to the handler, every value of a key in order', async () => {
      const reply = await client.call(SERVICE, 'Metadata', new Uint8Array(0), {
        metadata: { 'containerd-namespace-ttrpc': 'k8s.io', multi: ['a', 'b'] },
      });
      assert.deepEqual(JSON.parse(text(reply)), { 'containerd-namespace-ttrpc': ['k8s.io'], multi: ['a', 'b'] });
    });

    it('runs calls of one connection concurrently', async () => {
      const waiting = client.call(SERVICE, 'Wait', new Uint8Array(0));
      await hooks.waiting.promise;
      // Wait is still running: only a second call served meanwhile can release it.
      await client.call(SERVICE, 'Release', bytes('released'));
      assert.equal(text(await waiting), 'released');
      const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => client.call(SERVICE, 'Echo', bytes(`call ${i}`))));
      assert.deepEqual(
        replies.map(text),
        Array.from({ length: 20 }, (_, i) => `call ${i}`),
      );
    });

    it('turns a handler error into its status code and message at the client', async () => {
      await expectRejection(client.call(SERVICE, 'Fail', bytes('not-found')), Code.NotFound, /^container c1: not found$/);
      // Errors without a code are Internal, with their message and never a stack.
      await expectRejection(client.call(SERVICE, 'Fail', bytes('other')), Code.Internal, /^disk on fire$/);
    });

    it('answers Unimplemented for an unknown service or method and keeps the connection', async () => {
      const empty = new Uint8Array(0);
      await expectRejection(client.call('test.v1.Nope', 'Echo', empty), Code.Unimplemented, /unknown service test\.v1\.Nope/);
      await expectRejection(client.call(SERVICE, 'Nope', empty), Code.Unimplemented, /unknown method test\.v1\.Echo\/Nope/);
      // Names are matched exactly, never through the prototype chain.
      await expectRejection(client.call(SERVICE, 'toString', new Uint8Array(0)), Code.Unimplemented);
      assert.equal(text(await client.call(SERVICE, 'Echo', bytes('after'))), 'after');
    });

    it('refuses to answer with more than 4 MiB', async () => {
      await expectRejection(client.call(SERVICE, 'Big', new Uint8Array(0)), Code.ResourceExhausted);
      await expectRejection(client.call(SERVICE, 'Echo', new Uint8Array(MAX_PAYLOAD_LENGTH + 1)), Code.ResourceExhausted);
      assert.equal(text(await client.call(SERVICE, 'Echo', bytes('ok'))), 'ok');
    });
  });

  describe('deadlines', () => {
    it('aborts the handler at timeout_nano and answers DeadlineExceeded', async () => {
      const peer = await RawPeer.connect(path);
      peer.request(1, 'Wait', new Uint8Array(0), { timeoutNano: 20_000_000n });
      await expectResponse(peer, 1, Code.DeadlineExceeded);
      const reason = await aborted(await hooks.waiting.promise);
      assert.ok(reason instanceof RuntimeError && reason.code === Code.DeadlineExceeded);
      peer.request(3, 'Echo', bytes('x'));
      assert.equal(text(await expectResponse(peer, 3, Code.OK)), 'x');
      peer.destroy();
    });

    it('answers DeadlineExceeded at once for a deadline already passed', async () => {
      const peer = await RawPeer.connect(path);
      peer.request(1, 'Echo', bytes('late'), { timeoutNano: -1n });
      await expectResponse(peer, 1, Code.DeadlineExceeded);
      peer.destroy();
    });

    it('rejects a client call with DeadlineExceeded after timeoutMs', async () => {
      await expectRejection(client.call(SERVICE, 'Wait', new Uint8Array(0), { timeoutMs: 30 }), Code.DeadlineExceeded);
      assert.equal(text(await client.call(SERVICE, 'Echo', bytes('next'))), 'next');
    });

    it('rejects a cancelled call with Cancelled', async () => {
      const controller = new AbortController();
      const call = client.call(SERVICE, 'Wait', new Uint8Array(0), { signal: controller.signal });
      await hooks.waiting.promise;
      controller.abort();
      await expectRejection(call, Code.Cancelled);
    });
  });

  describe('malformed input on a raw connection', () => {
    it('closes the connection on a header cut short by EOF', async () => {
      const peer = await RawPeer.connect(path);
      peer.write(Buffer.from([0, 0, 0, 4, 0]));
      peer.end();
      await peer.expectClosed();
      await assertServerStillServes();
    });

    it('skips a payload over 4 MiB and answers ResourceExhausted on its stream', async () => {
      const peer = await RawPeer.connect(path);
      peer.write(encodeHeader(1, FrameType.Request, 0, MAX_PAYLOAD_LENGTH + 1));
      peer.write(Buffer.alloc(MAX_PAYLOAD_LENGTH + 1, 0xff));
      await expectResponse(peer, 1, Code.ResourceExhausted, /exceeds maximum message size/);
      peer.request(3, 'Echo', bytes('in sync'));
      assert.equal(text(await expectResponse(peer, 3, Code.OK)), 'in sync');
      peer.destroy();
      await assertServerStillServes();
    });

    it('closes the connection when the peer hangs up inside an oversized frame', async () => {
      const peer = await RawPeer.connect(path);
      peer.write(encodeHeader(1, FrameType.Request, 0, 0xffffffff));
      peer.write(Buffer.alloc(1024));
      peer.end();
      await peer.expectClosed();
      await assertServerStillServes();
    });

    it('answers InvalidArgument on an even stream id and ends the connection', async () => {
      const peer = await RawPeer.connect(path);
      peer.request(2, 'Echo', bytes('even'));
      peer.request(3, 'Echo', bytes('never read'));
      await expectResponse(peer, 2, Code.InvalidArgument, /must be odd/);
      await peer.expectClosed();
      await assertServerStillServes();
    });

    it('ends the connection on a stream id that does not increase, aborting its calls', async () => {
      const peer = await RawPeer.connect(path);
      peer.request(5, 'Echo', bytes('five'));
      const ok = await peer.next();
      // Success carries an explicit OK status, as containerd's Go server sends it.
      assert.deepEqual(fromBinary(ResponseSchema, ok.payload).status?.code, Code.OK);
      assert.equal(text(fromBinary(ResponseSchema, ok.payload).payload), 'five');
      peer.request(7, 'Wait', new Uint8Array(0));
      const signal = await hooks.waiting.promise;
      peer.request(5, 'Echo', bytes('five again'));
      await expectResponse(peer, 5, Code.InvalidArgument, /must be greater than the previous one \(7\)/);
      await peer.expectClosed();
      const reason = await aborted(signal);
      assert.ok(reason instanceof RuntimeError && reason.code === Code.Cancelled, String(reason));
      await assertServerStillServes();
    });

    it('ends the connection on a request that is not a ttrpc.Request', async () => {
      const peer = await RawPeer.connect(path);
      peer.frame(1, FrameType.Request, 0, Buffer.from([0xff, 0xff, 0xff, 0xff]));
      await expectResponse(peer, 1, Code.InvalidArgument, /invalid request/);
      await peer.expectClosed();
      await assertServerStillServes();
    });

    for (const [what, send, message] of [
      ['an unknown frame type', (peer: RawPeer) => peer.frame(1, 9, 0, bytes('??')), /unknown message type 9/],
      ['a Response from the client', (peer: RawPeer) => peer.frame(1, FrameType.Response, 0), /response frames/],
      ['data on a stream never opened', (peer: RawPeer) => peer.frame(1, FrameType.Data, 0, bytes('orphan')), /not open for data/],
      [
        'data on a unary call',
        (peer: RawPeer) => {
          peer.request(1, 'Wait', new Uint8Array(0));
          peer.frame(1, FrameType.Data, 0, bytes('for a unary call'));
        },
        /unary call/,
      ],
    ] as const) {
      it(`answers InvalidArgument on ${what} and ends the connection`, async () => {
        const peer = await RawPeer.connect(path);
        send(peer);
        await expectResponse(peer, 1, Code.InvalidArgument, message);
        await peer.expectClosed();
        await assertServerStillServes();
      });
    }

    it('aborts the calls of a connection that goes away', async () => {
      const peer = await RawPeer.connect(path);
      peer.request(1, 'Wait', new Uint8Array(0));
      const signal = await hooks.waiting.promise;
      peer.destroy();
      const reason = await aborted(signal);
      assert.ok(reason instanceof RuntimeError && reason.code === Code.Cancelled);
      await assertServerStillServes();
    });
  });

  describe('streams', () => {
    it('streams both ways until the client closes its side, then ends with a closing Data frame', async () => {
      const stream = client.openStream(SERVICE, 'Upper');
      await stream.send(bytes('a'));
      await stream.send(bytes('b'));
      const received: string[] = [];
      const iterator = stream[Symbol.asyncIterator]();
      received.push(text((await iterator.next()).value as Uint8Array));
      stream.closeSend();
      for (let item = await iterator.next(); !item.done; item = await iterator.next()) received.push(text(item.value));
      assert.deepEqual(received, ['A', 'B']);
      assert.equal(await stream.done, undefined);
      await hooks.streamDone.promise;
      await expectRejection(stream.send(bytes('late')), Code.FailedPrecondition);
    });

    it('uses the wire format of the reference: open request, close-send 0x05, server close 0x05', async () => {
      const peer = await RawPeer.connect(path);
      peer.request(1, 'Upper', new Uint8Array(0), { flags: Flag.RemoteOpen });
      peer.frame(1, FrameType.Data, 0, bytes('x'));
      const echoed = await peer.next();
      assert.deepEqual([echoed.streamId, echoed.type, echoed.flags, text(echoed.payload)], [1, FrameType.Data, 0, 'X']);
      peer.frame(1, FrameType.Data, Flag.RemoteClosed | Flag.NoData);
      const end = await peer.next();
      assert.deepEqual([end.streamId, end.type, end.flags, end.payload.length], [1, FrameType.Data, 0x05, 0]);
      // The stream is finished: more data on it crossed the end on the wire and is dropped.
      peer.frame(1, FrameType.Data, 0, bytes('more'));
      peer.request(3, 'Echo', bytes('next'));
      assert.equal(text(await expectResponse(peer, 3, Code.OK)), 'next');
      peer.destroy();
    });

    it('lets a client close its side of a stream the server has ended, without an answer', async () => {
      const peer = await RawPeer.connect(path);
      peer.request(1, 'Count', bytes('1'));
      assert.equal(text((await peer.next()).payload), '1');
      const end = await peer.next();
      assert.deepEqual([end.streamId, end.flags], [1, Flag.RemoteClosed | Flag.NoData]);
      // containerd closes its side after reading the end: no error Response may follow.
      peer.frame(1, FrameType.Data, Flag.RemoteClosed | Flag.NoData);
      peer.request(3, 'Echo', bytes('next'));
      assert.equal(text(await expectResponse(peer, 3, Code.OK)), 'next');
      peer.destroy();
    });

    it('serves a server-streaming call whose request carries the only message', async () => {
      const stream = client.openStream(SERVICE, 'Count', { initial: bytes('3'), closeSend: true });
      const received: string[] = [];
      for await (const message of stream) received.push(text(message));
      assert.deepEqual(received, ['1', '2', '3']);
      assert.equal(await stream.done, undefined);
    });

    it('ends a client-streaming call with a Response carrying the answer', async () => {
      const stream = client.openStream(SERVICE, 'Join');
      for (const part of ['x', 'y', 'z']) await stream.send(bytes(part));
      stream.closeSend();
      assert.equal(text((await stream.done) ?? new Uint8Array(0)), 'x+y+z');
      const rest: Uint8Array[] = [];
      for await (const message of stream) rest.push(message);
      assert.deepEqual(rest, []);
    });

    it('delivers what came before a stream error, then the error status', async () => {
      const stream = client.openStream(SERVICE, 'Broken');
      const iterator = stream[Symbol.asyncIterator]();
      assert.equal(text((await iterator.next()).value as Uint8Array), 'first');
      await expectRejection(iterator.next(), Code.FailedPrecondition, /stream went wrong/);
      await expectRejection(stream.done, Code.FailedPrecondition);
    });

    it('answers Unimplemented for an unknown streaming method', async () => {
      const stream = client.openStream(SERVICE, 'Nope');
      await expectRejection(stream.done, Code.Unimplemented);
    });

    it('keeps order and loses nothing when the reader is slower than the sender', async () => {
      const stream = client.openStream(SERVICE, 'Upper');
      const count = 500;
      const sending = (async () => {
        for (let i = 0; i < count; i++) await stream.send(bytes(`m${i}`));
        stream.closeSend();
      })();
      const received: string[] = [];
      for await (const message of stream) {
        received.push(text(message));
        // Yield to the event loop so the queues really fill up.
        if (received.length % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
      await sending;
      assert.deepEqual(
        received,
        Array.from({ length: count }, (_, i) => `M${i}`),
      );
    });
  });

  describe('connection and socket lifecycle', () => {
    it('creates the socket with mode 0600', async () => {
      const stats = await stat(path);
      assert.ok(stats.isSocket());
      assert.equal(stats.mode & 0o777, 0o600);
    });

    it('rejects pending calls and streams with Unavailable when the connection is lost', async () => {
      const pending = expectRejection(client.call(SERVICE, 'Wait', new Uint8Array(0)), Code.Unavailable);
      const stream = client.openStream(SERVICE, 'Upper');
      await hooks.waiting.promise;
      await server.close();
      await pending;
      await expectRejection(stream.done, Code.Unavailable);
      assert.ok(client.closed);
      await expectRejection(client.call(SERVICE, 'Echo', bytes('x')), Code.Unavailable);
    });

    it('close() stops listening and removes the socket file', async () => {
      await server.close();
      await assert.rejects(stat(path), { code: 'ENOENT' });
      await expectRejection(TtrpcClient.connect(path), Code.Unavailable);
    });

    it('replaces a stale socket file but refuses a live one or another file', async () => {
      await expectRejection(new TtrpcServer().listen(path), Code.AlreadyExists, /ttrpc server on/);
      await expectRejection(new TtrpcServer().listen(dir), Code.AlreadyExists, /not a socket/);
      const stalePath = nextSocketPath();
      await leaveStaleSocket(stalePath);
      assert.ok((await stat(stalePath)).isSocket());
      const successor = new TtrpcServer();
      successor.register(SERVICE, { unary: { Echo: async ({ payload }) => payload } });
      await successor.listen(stalePath);
      const other = await TtrpcClient.connect(stalePath);
      try {
        assert.equal(text(await other.call(SERVICE, 'Echo', bytes('successor'))), 'successor');
      } finally {
        other.close();
        await successor.close();
      }
    });
  });
});

describe('ttrpc server: bounded work per connection', () => {
  let server: TtrpcServer;
  let path: string;
  /** The server's side of every connection, to see what it holds. */
  let accepted: net.Socket[];
  let counts: { started: number; running: number; maxRunning: number };
  let release: ReturnType<typeof gate>;
  let fullHouse: ReturnType<typeof gate>;

  beforeEach(async () => {
    accepted = [];
    counts = { started: 0, running: 0, maxRunning: 0 };
    release = gate();
    fullHouse = gate();
    server = new TtrpcServer({
      onAccepted: (socket) => accepted.push(socket),
      longCalls: (_service, method) => method === 'Park',
    });
    const hold = async (): Promise<Uint8Array> => {
      counts.started++;
      counts.maxRunning = Math.max(counts.maxRunning, ++counts.running);
      if (counts.running === MAX_SHORT_CALLS) fullHouse.open(undefined);
      await release.promise;
      counts.running--;
      return new Uint8Array(0);
    };
    server.register(SERVICE, {
      unary: {
        Echo: async ({ payload }) => payload,
        // 64 KiB answers to a few bytes of request: the answers pile up, the requests do not.
        Blob: async () => {
          counts.started++;
          return new Uint8Array(64 * 1024);
        },
        Hold: hold,
        Park: hold,
      },
    });
    path = nextSocketPath();
    await server.listen(path);
  });

  afterEach(async () => {
    release.open(undefined);
    await server.close();
  });

  /** A round trip on another connection: the server had its turn at every socket meanwhile. */
  async function roundTrip(): Promise<void> {
    const client = await TtrpcClient.connect(path);
    try {
      assert.equal(text(await client.call(SERVICE, 'Echo', bytes('hi'))), 'hi');
    } finally {
      client.close();
    }
  }

  it(`runs at most ${MAX_SHORT_CALLS} short calls of one connection at once; the rest wait, none fails`, async () => {
    const total = MAX_SHORT_CALLS + 100;
    const peer = await RawPeer.connect(path);
    for (let i = 0; i < total; i++) peer.request(2 * i + 1, 'Hold', new Uint8Array(0));
    await fullHouse.promise;
    await roundTrip();
    assert.equal(counts.maxRunning, MAX_SHORT_CALLS);
    assert.equal(counts.started, MAX_SHORT_CALLS);
    release.open(undefined);
    for (let i = 0; i < total; i++) await expectResponse(peer, 2 * i + 1, Code.OK);
    assert.equal(counts.started, total);
    peer.destroy();
  });

  it('counts long calls apart: many pending Waits never keep short calls from being read', async () => {
    const peer = await RawPeer.connect(path);
    const parked = MAX_SHORT_CALLS + 10;
    for (let i = 0; i < parked; i++) peer.request(2 * i + 1, 'Park', new Uint8Array(0));
    await fullHouse.promise;
    peer.request(2 * parked + 1, 'Echo', bytes('still read'));
    assert.equal(text(await expectResponse(peer, 2 * parked + 1, Code.OK)), 'still read');
    assert.equal(counts.running, parked);
    release.open(undefined);
    for (let i = 0; i < parked; i++) await expectResponse(peer, 2 * i + 1, Code.OK);
    peer.destroy();
  });

  it('stops reading a client that does not read its answers, holds little for it, and goes on once it reads', async () => {
    const total = 1000; // 64 MiB of answers to 30 KB of requests
    const peer = await RawPeer.connect(path);
    peer.pauseReading();
    for (let i = 0; i < total; i++) peer.request(2 * i + 1, 'Blob', new Uint8Array(0));
    await roundTrip();
    await roundTrip();
    const [socket] = accepted;
    assert.ok(socket, 'the server accepted the connection');
    assert.ok(counts.started < total / 4, `the server went on handling: ${counts.started} of ${total}`);
    // At most the answers of the calls running when reading stopped (the socket's 16 KiB
    // high-water mark is passed by the first answers): a few MiB, not the 64 MiB asked for.
    const bound = (MAX_SHORT_CALLS + 1) * 64 * 1024;
    assert.ok(socket.writableLength <= bound, `${socket.writableLength} bytes of answers held`);
    peer.resumeReading();
    for (let i = 0; i < total; i++) {
      assert.equal((await expectResponse(peer, 2 * i + 1, Code.OK)).length, 64 * 1024);
    }
    assert.equal(counts.started, total);
    peer.destroy();
  });
});

describe('ttrpc client on the wire', () => {
  /** A server speaking raw frames: records what the client sends, answers as `reply` says. */
  async function rawServer(
    reply: (frame: Frame, socket: net.Socket) => void,
  ): Promise<{ path: string; frames: Frame[]; close: () => Promise<void> }> {
    const frames: Frame[] = [];
    const sockets = new Set<net.Socket>();
    const listener = net.createServer((socket) => {
      sockets.add(socket);
      const decoder = new FrameDecoder();
      socket.on('data', (chunk: Buffer) => {
        for (const item of decoder.push(chunk)) {
          if (item.kind !== 'frame') continue;
          frames.push(item.frame);
          reply(item.frame, socket);
        }
      });
    });
    const path = nextSocketPath();
    listener.listen(path);
    await once(listener, 'listening');
    const close = async (): Promise<void> => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    };
    return { path, frames, close };
  }

  const send = (socket: net.Socket, streamId: number, type: FrameType, flags: number, payload: Uint8Array): void => {
    socket.write(Buffer.concat([encodeHeader(streamId, type, flags, payload.length), payload]));
  };
  const okResponse = (payload: Uint8Array): Uint8Array => toBinary(ResponseSchema, create(ResponseSchema, { payload }));

  it('uses odd increasing stream ids from 1, timeout_nano, metadata and the stream flags of the reference', async () => {
    const raw = await rawServer((frame, socket) => {
      if (frame.type === FrameType.Request && frame.flags === 0) {
        send(socket, frame.streamId, FrameType.Response, 0, okResponse(fromBinary(RequestSchema, frame.payload).payload));
      } else if (frame.type === FrameType.Request && frame.flags === Flag.RemoteClosed) {
        // The last message and the close in one frame, as the protocol allows.
        send(socket, frame.streamId, FrameType.Data, Flag.RemoteClosed, bytes('last'));
      } else if (frame.type === FrameType.Data && frame.flags === (Flag.RemoteClosed | Flag.NoData)) {
        send(socket, frame.streamId, FrameType.Data, Flag.RemoteClosed | Flag.NoData, new Uint8Array(0));
      }
    });
    const client = await TtrpcClient.connect(raw.path);
    try {
      const metadata = { 'containerd-namespace-ttrpc': 'k8s.io' };
      assert.equal(text(await client.call('s.v1.S', 'A', bytes('a'), { timeoutMs: 1500, metadata })), 'a');
      assert.equal(text(await client.call('s.v1.S', 'B', bytes('b'))), 'b');
      const stream = client.openStream('s.v1.S', 'Bidi');
      await stream.send(bytes('x'));
      stream.closeSend();
      assert.equal(await stream.done, undefined);
      const serverStream = client.openStream('s.v1.S', 'Down', { initial: bytes('q'), closeSend: true });
      const received: string[] = [];
      for await (const message of serverStream) received.push(text(message));
      assert.deepEqual(received, ['last']);

      const summary = raw.frames.map((frame) => [frame.streamId, frame.type, frame.flags, frame.payload.length]);
      const requests = raw.frames
        .filter((frame) => frame.type === FrameType.Request)
        .map((frame) => fromBinary(RequestSchema, frame.payload));
      assert.deepEqual(summary, [
        [1, FrameType.Request, 0, summary[0]![3]],
        [3, FrameType.Request, 0, summary[1]![3]],
        [5, FrameType.Request, Flag.RemoteOpen, summary[2]![3]],
        [5, FrameType.Data, 0, 1],
        [5, FrameType.Data, 0x05, 0],
        [7, FrameType.Request, Flag.RemoteClosed, summary[5]![3]],
      ]);
      assert.deepEqual(
        requests.map((request) => [request.service, request.method, text(request.payload), request.timeoutNano]),
        [
          ['s.v1.S', 'A', 'a', 1_500_000_000n],
          ['s.v1.S', 'B', 'b', 0n],
          ['s.v1.S', 'Bidi', '', 0n],
          ['s.v1.S', 'Down', 'q', 0n],
        ],
      );
      assert.deepEqual(
        requests[0]!.metadata.map((pair) => [pair.key, pair.value]),
        [['containerd-namespace-ttrpc', 'k8s.io']],
      );
    } finally {
      client.close();
      await raw.close();
    }
  });

  it('fails a call whose answer is over 4 MiB, and everything pending when the connection drops', async () => {
    const held = gate<net.Socket>();
    const raw = await rawServer((frame, socket) => {
      const method = fromBinary(RequestSchema, frame.payload).method;
      if (method === 'Huge') {
        socket.write(encodeHeader(frame.streamId, FrameType.Response, 0, MAX_PAYLOAD_LENGTH + 1));
        socket.write(Buffer.alloc(MAX_PAYLOAD_LENGTH + 1));
      } else if (method === 'Echo') {
        send(socket, frame.streamId, FrameType.Response, 0, okResponse(bytes('small')));
      } else {
        held.open(socket);
      }
    });
    const client = await TtrpcClient.connect(raw.path);
    try {
      await expectRejection(client.call('s.v1.S', 'Huge', new Uint8Array(0)), Code.ResourceExhausted);
      assert.equal(text(await client.call('s.v1.S', 'Echo', new Uint8Array(0))), 'small');
      const hold = client.call('s.v1.S', 'Hold', new Uint8Array(0));
      const pending = expectRejection(hold, Code.Unavailable, /connection closed/);
      (await held.promise).destroy();
      await pending;
    } finally {
      client.close();
      await raw.close();
    }
  });

  it('fails to connect with Unavailable when nobody listens', async () => {
    await expectRejection(TtrpcClient.connect(join(dir, 'nobody.sock'), { timeoutMs: 1000 }), Code.Unavailable, /ENOENT/);
  });
});
