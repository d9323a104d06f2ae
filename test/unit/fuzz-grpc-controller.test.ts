// Fuzzing the sandbox Controller (gRPC) as kuasard serves it: controller handlers over a real
// Sandboxer whose kind is a fake, through src/rpc/grpc.ts on a unix socket. Arbitrary request
// bytes for every method (well-formed messages with hostile values, CRI PodSandboxConfig options
// included, and plain garbage) must be answered with a code the caller can act on, and the
// server must go on serving.
// A failure prints fast-check's seed and path: FUZZ_SEED=<seed> FUZZ_PATH=<path> replays it.
import { create, toBinary } from '@bufbuild/protobuf';
import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { pino } from 'pino';
import { Controller } from '../../src/api/containerd/services/sandbox/v1/sandbox_pb.js';
import { PodSandboxConfigSchema } from '../../src/api/cri/runtime/v1/api_pb.js';
import { Code } from '../../src/base/errors.js';
import { fakeTaskEndpoints, TestKind } from '../../src/devenv/test-kind.js';
import { Sandboxer } from '../../src/engine/sandboxer.js';
import { ACTIONABLE_CODES, fuzzParameters, rawUnaryCall, requestBytes } from '../../src/devenv/fuzz.js';
import { addGrpcService, grpcMethodPath } from '../../src/rpc/grpc.js';
import { withCallLog } from '../../src/services/call-log.js';
import { controllerHandlers } from '../../src/services/controller.js';

describe('sandbox Controller over gRPC (fuzzed)', () => {
  let dir: string;
  let server: grpc.Server;
  let client: grpc.Client;
  const codesSeen = new Map<string, number>();

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kuasar-fuzz-grpc-'));
    const log = pino({ level: 'silent' });
    const endpoints = fakeTaskEndpoints(() => 'ttrpc+unix:///nowhere/task.sock');
    const sandboxer = new Sandboxer(new TestKind(), join(dir, 'state'), { publish: () => undefined }, endpoints, log);
    await sandboxer.init();
    server = new grpc.Server();
    addGrpcService(server, Controller, withCallLog(controllerHandlers(sandboxer), log, 'controller'));
    const socket = join(dir, 'controller.sock');
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
  });

  after(async () => {
    client.close();
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
    console.log(`# fuzzed controller, answers seen: ${JSON.stringify(Object.fromEntries(codesSeen))}`);
  });

  /** A Wait on a live sandbox is held open, as containerd's is: the call gives up after a while. */
  const callRaw = async (path: string, bytes: Uint8Array) => {
    const { code, details } = await rawUnaryCall(client, path, bytes, 1000);
    return { code: code as Code, details };
  };

  const controllerCall = fc
    .constantFrom(...Controller.methods)
    .chain((method) => requestBytes(method.input, { anyTypes: [PodSandboxConfigSchema] }).map((payload) => ({ method, payload })));

  it('answers arbitrary requests to every Controller method with a code the caller can act on', async () => {
    await fc.assert(
      fc.asyncProperty(controllerCall, async ({ method, payload }) => {
        const { code, details } = await callRaw(grpcMethodPath(method), payload);
        codesSeen.set(Code[code], (codesSeen.get(Code[code]) ?? 0) + 1);
        assert.ok(ACTIONABLE_CODES.has(code), `${method.name} answered ${Code[code]}: ${details}`);
      }),
      fuzzParameters(400),
    );
    const request = toBinary(Controller.method.status.input, create(Controller.method.status.input, { sandboxId: 'never-created' }));
    const status = await callRaw(grpcMethodPath(Controller.method.status), request);
    assert.equal(status.code, Code.NotFound, `the server still serves: ${status.details}`);
  });
});
