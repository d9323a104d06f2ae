// The CRI client against a fake CRI server on a unix socket, and the CRI log reader.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ImageService, RuntimeService } from '../../src/api/cri/runtime/v1/api_pb.js';
import { Code, RuntimeError, notFound, unimplemented } from '../../src/base/errors.js';
import { addGrpcService, type GrpcUnaryHandlers } from '../../src/rpc/grpc.js';
import { ContainerState, CriClient, criEndpoint, criLogText, parseCriLog, readContainerLog } from '../../src/cri/client.js';

/** Handlers for the methods a test uses; every other method answers Unimplemented. */
function only<S extends Parameters<typeof addGrpcService>[1]>(handlers: Partial<GrpcUnaryHandlers<S>>): GrpcUnaryHandlers<S> {
  return new Proxy(handlers, {
    get: (target, key) =>
      (target as Record<string | symbol, unknown>)[key] ??
      (async () => {
        throw unimplemented(String(key));
      }),
  }) as GrpcUnaryHandlers<S>;
}

describe('CriClient', () => {
  let dir: string;
  let socket: string;
  let server: grpc.Server;
  let statusCalls = 0;
  const seenVersions: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cri-test-'));
    socket = join(dir, 'containerd.sock');
    server = new grpc.Server();
    addGrpcService(
      server,
      RuntimeService,
      only<typeof RuntimeService>({
        async version(request) {
          seenVersions.push(request.version);
          return { version: '0.1.0', runtimeName: 'containerd', runtimeVersion: 'v2.1.9', runtimeApiVersion: 'v1' };
        },
        async containerStatus(request) {
          if (request.containerId === 'stuck') return { status: { id: 'stuck', state: ContainerState.CONTAINER_CREATED } };
          if (request.containerId !== 'c1') throw notFound(`container ${request.containerId}`);
          // Created for the first three calls, then running.
          statusCalls++;
          const state = statusCalls > 3 ? ContainerState.CONTAINER_RUNNING : ContainerState.CONTAINER_CREATED;
          return { status: { id: 'c1', state, logPath: '/var/log/pods/p/c1/0.log' } };
        },
      }),
    );
    addGrpcService(
      server,
      ImageService,
      only<typeof ImageService>({
        async listImages() {
          return { images: [{ id: 'sha256:1', repoTags: ['localhost/busybox:latest'], size: 1234n }] };
        },
      }),
    );
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (error) => (error ? reject(error) : resolve())),
    );
  });

  after(async () => {
    server.forceShutdown();
    await rm(dir, { recursive: true, force: true });
  });

  test('criEndpoint adds unix:// to a path and keeps endpoints', () => {
    assert.equal(criEndpoint('/run/containerd/containerd.sock'), 'unix:///run/containerd/containerd.sock');
    assert.equal(criEndpoint('unix:///run/x.sock'), 'unix:///run/x.sock');
  });

  test('runtime and image clients share one connection to a plain socket path', async () => {
    const cri = new CriClient(socket);
    try {
      await cri.waitForReady(2000);
      const version = await cri.runtime.version({ version: 'v1' });
      assert.equal(version.runtimeName, 'containerd');
      assert.deepEqual(seenVersions, ['v1']);
      const { images } = await cri.image.listImages({});
      assert.deepEqual(
        images.map((i) => [i.repoTags[0], i.size]),
        [['localhost/busybox:latest', 1234n]],
      );
      await assert.rejects(cri.runtime.runPodSandbox({}), { code: Code.Unimplemented });
    } finally {
      cri.close();
    }
  });

  test('waitForContainerState polls until the state is reached', async () => {
    const cri = new CriClient(`unix://${socket}`);
    try {
      statusCalls = 0;
      const status = await cri.waitForContainerState('c1', ContainerState.CONTAINER_RUNNING, { timeoutMs: 5000, intervalMs: 10 });
      assert.equal(status.state, ContainerState.CONTAINER_RUNNING);
      assert.equal(status.logPath, '/var/log/pods/p/c1/0.log');
      assert.equal(statusCalls, 4);
    } finally {
      cri.close();
    }
  });

  test('waitForContainerState times out naming the last state, and passes errors through', async () => {
    const cri = new CriClient(socket);
    try {
      const started = Date.now();
      await assert.rejects(
        cri.waitForContainerState('stuck', ContainerState.CONTAINER_EXITED, { timeoutMs: 200, intervalMs: 20 }),
        (error: unknown) => {
          assert.ok(error instanceof RuntimeError);
          assert.equal(error.code, Code.DeadlineExceeded);
          assert.match(error.message, /stuck: still CONTAINER_CREATED after 200 ms, wanted CONTAINER_EXITED/);
          return true;
        },
      );
      assert.ok(Date.now() - started < 2000);
      await assert.rejects(cri.waitForContainerState('gone', ContainerState.CONTAINER_EXITED, { timeoutMs: 5000 }), {
        code: Code.NotFound,
        message: 'container gone: not found',
      });
    } finally {
      cri.close();
    }
  });
});

describe('CRI log format', () => {
  const sample = [
    '2024-05-01T10:00:00.000000001Z stdout F hello',
    '2024-05-01T10:00:00.000000002Z stderr P warn',
    '2024-05-01T10:00:00.000000003Z stdout P par',
    '2024-05-01T10:00:00.000000004Z stdout F tial line with  two spaces ',
    '2024-05-01T10:00:00.000000005Z stderr F ing',
    '2024-05-01T10:00:00.000000006Z stdout F ',
    '2024-05-01T10:00:00.000000007Z stdout F',
    '2024-05-01T10:00:00.000000008Z stdout F still being wri',
  ].join('\n');

  test('records keep time, stream, partial flag and exact content', () => {
    const records = parseCriLog(sample);
    assert.equal(records.length, 7, 'the unfinished last line is left out');
    assert.deepEqual(records[0], { time: '2024-05-01T10:00:00.000000001Z', stream: 'stdout', partial: false, content: 'hello' });
    assert.equal(records[1]?.partial, true);
    assert.equal(records[3]?.content, 'tial line with  two spaces ');
    assert.equal(records[5]?.content, '');
    assert.equal(records[6]?.content, '');
  });

  test('text joins partial records per stream', () => {
    const records = parseCriLog(`${sample}\n`);
    assert.equal(criLogText(records, 'stdout'), 'hello\npartial line with  two spaces \n\n\nstill being wri\n');
    assert.equal(criLogText(records, 'stderr'), 'warning\n');
    // Without a stream filter, records join in file order: interleaved partials mix.
    assert.equal(criLogText(records), 'hello\nwarnpartial line with  two spaces \ning\n\n\nstill being wri\n');
  });

  test('a malformed line is an InvalidArgument naming file and line', () => {
    assert.throws(() => parseCriLog('2024-05-01T10:00:00Z stdout F ok\ngarbage\n', '/x/0.log'), {
      code: Code.InvalidArgument,
      message: '/x/0.log:2: not a CRI log record',
    });
  });

  test('readContainerLog reads a file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cri-log-'));
    try {
      const path = join(dir, '0.log');
      await writeFile(path, '2024-05-01T10:00:00.5Z stdout F ümlaut ✓\n');
      const records = await readContainerLog(path);
      assert.equal(criLogText(records), 'ümlaut ✓\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
