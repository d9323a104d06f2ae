// Fuzzing the ttrpc services of a sandbox (Task v2 and v3, Streaming) through a real TtrpcServer
// on a unix socket, registered as kuasard registers them, over a Sandbox whose kind is a fake
// (processes end when killed). Arbitrary requests of every method and arbitrary frames and
// envelopes must be answered with a code a caller can act on (never Internal or Unknown) or end
// only the offending connection; a well-behaved connection is served after each input, and the
// log stays a few lines however much garbage arrives.
// A failure prints fast-check's seed and path: FUZZ_SEED=<seed> FUZZ_PATH=<path> replays it.
import { create, fromBinary, toBinary, type DescMethod } from '@bufbuild/protobuf';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { pino } from 'pino';
import { Task } from '../../src/api/containerd/runtime/task/v3/shim_pb.js';
import { StreamInitSchema, Streaming } from '../../src/api/containerd/services/streaming/v1/streaming_pb.js';
import { DataSchema, WindowUpdateSchema } from '../../src/api/containerd/types/transfer/streaming_pb.js';
import { RequestSchema, ResponseSchema } from '../../src/api/ttrpc/ttrpc_pb.js';
import { AnySchema } from '@bufbuild/protobuf/wkt';
import { Code, RuntimeError } from '../../src/base/errors.js';
import type { SandboxRecord } from '../../src/base/model.js';
import { Sandbox } from '../../src/engine/sandbox.js';
import { TestKind } from '../../src/devenv/test-kind.js';
import {
  ACTIONABLE_CODES,
  encodeFuzzFrames,
  fuzzFrameArbitrary,
  fuzzParameters,
  hostileString,
  requestBytes,
  type FuzzFrame,
} from '../../src/devenv/fuzz.js';
import { FrameDecoder, FrameType, encodeHeader, type Frame } from '../../src/rpc/ttrpc/frame.js';
import { TtrpcClient, TtrpcServer, registerService } from '../../src/rpc/ttrpc/index.js';
import { withCallLog } from '../../src/services/call-log.js';
import { LINUX_RESOURCES_TYPE, PROCESS_SPEC_TYPE } from '../../src/services/resources.js';
import { packAny } from '../../src/services/wkt.js';
import { streamingHandlers } from '../../src/services/streaming.js';
import { TASK_SERVICE_NAMES, taskHandlers } from '../../src/services/task.js';

const STREAMING = Streaming.typeName;
const STDIO = { stdin: '', stdout: '/fifo/out', stderr: '/fifo/err', terminal: false };

/** The frames that came back on a raw connection, and whether the server closed it. */
interface RawOutcome {
  frames: Frame[];
  closedByServer: boolean;
}

/** The status code of a Response frame; fails on anything that is not a well-formed Response. */
function responseCode(frame: Frame): Code {
  const response = fromBinary(ResponseSchema, frame.payload);
  return (response.status?.code ?? Code.OK) as Code;
}

describe('ttrpc services of a sandbox (fuzzed)', () => {
  let dir: string;
  let path: string;
  let server: TtrpcServer<Sandbox>;
  let client: TtrpcClient;
  const warnings: string[] = [];
  const codesSeen = new Map<string, number>();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kuasar-fuzz-ttrpc-'));
    const log = pino({ level: 'silent' });
    const record = { id: 'pod', kind: 'fake', namespace: 'k8s.io', phase: 'ready', containers: [] } as unknown as SandboxRecord;
    const kind = new TestKind();
    const sandbox = new Sandbox(record, dir, kind, { publish: () => undefined }, log);
    sandbox.handle = await kind.createSandbox(sandbox);
    await sandbox.createTask({ id: 'c1', bundle: '/bundle', rootfs: [], stdio: STDIO });
    await sandbox.startTask('c1');
    server = new TtrpcServer({ scope: sandbox, logger: { warn: (_fields, message) => void warnings.push(message) } });
    registerService(server, Task, withCallLog(taskHandlers(), log, 'task'), { names: TASK_SERVICE_NAMES });
    registerService(server, Streaming, streamingHandlers());
    path = join(dir, 'task.sock');
    await server.listen(path);
    client = await TtrpcClient.connect(path);
  });

  after(async () => {
    client.close();
    await server.close();
    await rm(dir, { recursive: true, force: true });
    console.log(`# fuzzed ttrpc services, answers seen: ${JSON.stringify(Object.fromEntries(codesSeen))}`);
  });

  function seen(code: Code): void {
    codesSeen.set(Code[code], (codesSeen.get(Code[code]) ?? 0) + 1);
  }

  /** A call on the long-lived, well-behaved connection; a Wait on a live process gives up after a while. */
  async function callCode(service: string, method: string, payload: Uint8Array): Promise<Code> {
    try {
      await client.call(service, method, payload, { timeoutMs: 1000 });
      return Code.OK;
    } catch (err) {
      assert.ok(err instanceof RuntimeError, `not a RuntimeError: ${String(err)}`);
      return err.code;
    }
  }

  /**
   * A new connection is served: a Connect on it is answered. No deadline: this answer is the
   * assertion (a loaded machine may take longer than a fuzzed Wait is given).
   */
  async function assertStillServed(): Promise<void> {
    const fresh = await TtrpcClient.connect(path);
    try {
      await fresh.call(
        TASK_SERVICE_NAMES[0]!,
        'Connect',
        toBinary(Task.method.connect.input, create(Task.method.connect.input, { id: 'c1' })),
      );
    } finally {
      fresh.close();
    }
  }

  const taskCall = fc
    .record({
      service: fc.constantFrom(...TASK_SERVICE_NAMES),
      method: fc.constantFrom(...Task.methods),
    })
    .chain(({ service, method }) =>
      requestBytes(method.input, { jsonTypeUrls: [PROCESS_SPEC_TYPE, LINUX_RESOURCES_TYPE] }).map((payload) => ({
        service,
        method,
        payload,
      })),
    );

  it('answers arbitrary requests to every Task method with a code the caller can act on', async () => {
    await fc.assert(
      fc.asyncProperty(taskCall, async ({ service, method, payload }: { service: string; method: DescMethod; payload: Uint8Array }) => {
        const code = await callCode(service, method.name, payload);
        seen(code);
        assert.ok(ACTIONABLE_CODES.has(code), `${service}/${method.name} answered ${Code[code]}`);
      }),
      fuzzParameters(400),
    );
    await assertStillServed();
  });

  /** Messages of a Streaming stream: StreamInit, Data, WindowUpdate or anything, in any order. */
  const streamMessage = fc.oneof(
    hostileString.map((id) => packAny(StreamInitSchema, { id })),
    fc.uint8Array({ maxLength: 64 }).map((data) => packAny(DataSchema, { data })),
    fc.integer({ min: -5, max: 2 ** 31 - 1 }).map((update) => packAny(WindowUpdateSchema, { update })),
    fc.record({ typeUrl: hostileString, value: fc.uint8Array({ maxLength: 32 }) }),
  );

  it('ends arbitrary Streaming streams with a code the caller can act on', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            { weight: 9, arbitrary: streamMessage.map((m) => toBinary(AnySchema, create(AnySchema, m))) },
            { weight: 1, arbitrary: fc.uint8Array({ maxLength: 32 }) },
          ),
          { maxLength: 6 },
        ),
        async (messages) => {
          const stream = client.openStream(STREAMING, 'Stream');
          const drained = (async () => {
            for await (const _message of stream);
          })();
          let code = Code.OK;
          try {
            for (const message of messages) await stream.send(message);
            stream.closeSend();
            await stream.done;
            await drained;
          } catch (err) {
            assert.ok(err instanceof RuntimeError, `not a RuntimeError: ${String(err)}`);
            code = err.code;
            await drained.catch(() => undefined);
          }
          seen(code);
          assert.ok(ACTIONABLE_CODES.has(code), `Streaming/Stream ended with ${Code[code]}`);
        },
      ),
      fuzzParameters(150),
    );
    await assertStillServed();
  });

  const rawFrame = fuzzFrameArbitrary([...TASK_SERVICE_NAMES, STREAMING], [...Task.methods.map((m) => m.name), 'Stream']);

  /**
   * Sends `frames` on a fresh connection, then a State request on the highest stream id, and
   * collects what comes back until that answer arrives or the server closes the connection.
   */
  async function sendRaw(frames: readonly FuzzFrame[]): Promise<RawOutcome> {
    const socket = net.createConnection(path);
    await once(socket, 'connect');
    const received: Frame[] = [];
    const decoder = new FrameDecoder();
    const LAST = 2 ** 32 - 1;
    let closedByServer = false;
    const done = new Promise<void>((resolve) => {
      socket.on('data', (chunk: Buffer) => {
        for (const item of decoder.push(chunk)) {
          assert.equal(item.kind, 'frame', 'the server sent a malformed frame');
          if (item.kind !== 'frame') continue;
          received.push(item.frame);
          if (item.frame.streamId === LAST) resolve();
        }
      });
      socket.on('close', () => {
        closedByServer = true;
        resolve();
      });
    });
    socket.on('error', () => undefined); // a write after the server hung up
    socket.write(encodeFuzzFrames(frames));
    const state = toBinary(
      RequestSchema,
      create(RequestSchema, {
        service: TASK_SERVICE_NAMES[0],
        method: 'State',
        payload: toBinary(Task.method.state.input, create(Task.method.state.input, { id: 'c1' })),
      }),
    );
    socket.write(Buffer.concat([encodeHeader(LAST, FrameType.Request, 0, state.length), state]));
    await done;
    socket.destroy();
    return { frames: received, closedByServer };
  }

  it('answers or closes a connection sending arbitrary frames and envelopes, and serves the next one', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(rawFrame, { minLength: 1, maxLength: 8 }), async (frames) => {
        const outcome = await sendRaw(frames);
        for (const frame of outcome.frames) {
          assert.ok(frame.type === FrameType.Response || frame.type === FrameType.Data, `frame type ${frame.type} from the server`);
          if (frame.type !== FrameType.Response) continue;
          const code = responseCode(frame);
          seen(code);
          assert.ok(ACTIONABLE_CODES.has(code), `raw answer ${Code[code]}: ${fromBinary(ResponseSchema, frame.payload).status?.message}`);
        }
        if (outcome.closedByServer) {
          // A connection is ended only after the answer that says why.
          const last = outcome.frames.at(-1);
          assert.ok(last && last.type === FrameType.Response && responseCode(last) === Code.InvalidArgument, 'closed without a word');
        }
        await assertStillServed();
      }),
      fuzzParameters(200),
    );
    // Hundreds of bad connections, a few lines each kind (and their summaries).
    const kinds = new Set(warnings.map((w) => w.replace(/ \(\d+ more like it suppressed\)$/, '')));
    assert.ok(warnings.length <= kinds.size * 11, `${warnings.length} warnings for ${kinds.size} kinds: ${[...kinds].join(', ')}`);
  });
});
