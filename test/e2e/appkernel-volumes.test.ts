// Volumes of the appkernel kind, end to end through CRI: host directories and files reach the
// gVisor sandbox through runsc's gofer, as CRI mounts them (read-write, read-only), an emptyDir-like
// host directory is shared by two containers of the pod, and nothing of the host outside a
// container's mounts is reachable from it. Every pod is removed and must leave nothing behind.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { create } from '@bufbuild/protobuf';
import { MountSchema, type ContainerConfig, type PodSandboxConfig } from '../../src/api/cri/runtime/v1/api_pb.js';
import { ContainerState } from '../../src/cri/client.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { NO_LEAKS } from '../../src/devenv/leaks.js';
import { runPod, runToExit, startRunning, type PodRun } from '../../src/devenv/pod-runs.js';
import { containerConfig } from '../../src/devenv/pods.js';

describe('appkernel kind: volumes through CRI', () => {
  let env: Environment;
  let volumes: string;

  before(async () => {
    env = await startEnvironment();
    volumes = mkdtempSync(join(env.paths.dir, 'volumes-'));
  });

  after(async () => {
    if (volumes) rmSync(volumes, { recursive: true, force: true });
    await env?.stop();
  });

  async function withPod(pod: PodSandboxConfig, body: (run: PodRun) => Promise<void>) {
    const { leaks } = await runPod(env, env.handlers.kuasar['appkernel'] ?? '', pod, [env.paths.kuasarState], body);
    assert.deepEqual(leaks, NO_LEAKS, 'the pod left nothing behind');
  }

  const shell = (name: string, script: string): ContainerConfig =>
    containerConfig({ name, image: env.images.busybox, command: ['sh', '-c', script] });

  it('binds a host directory read-write and one read-only, and shows nothing else of the host', async () => {
    const data = mkdtempSync(join(volumes, 'data-'));
    const config = mkdtempSync(join(volumes, 'config-'));
    chmodSync(data, 0o777);
    writeFileSync(join(config, 'settings'), 'x=1\n');
    // A host file beside the volumes, under a path the container does not mount.
    const secret = join(volumes, 'secret');
    writeFileSync(secret, 'not for the pod\n');
    await withPod(env.podConfig({ name: 'appkernel-volumes' }), async (run) => {
      const container = shell(
        'volumes',
        [
          'echo hi > /data/out && echo data-written',
          'cat /config/settings',
          'if touch /config/probe 2>/dev/null; then echo config-writable; else echo config-readonly; fi',
          `if [ -e ${secret} ]; then echo host-visible; else echo host-hidden; fi`,
          `if [ -e ${volumes} ]; then echo volumes-dir-visible; else echo volumes-dir-hidden; fi`,
        ].join('\n'),
      );
      container.mounts = [
        create(MountSchema, { containerPath: '/data', hostPath: data }),
        create(MountSchema, { containerPath: '/config', hostPath: config, readonly: true }),
      ];
      const { status, stdout, stderr } = await runToExit(env, run, container);
      assert.equal(status.exitCode, 0, stderr);
      assert.equal(stdout, ['data-written', 'x=1', 'config-readonly', 'host-hidden', 'volumes-dir-hidden', ''].join('\n'));
      assert.equal(readFileSync(join(data, 'out'), 'utf8'), 'hi\n', 'the write reached the host directory');
    });
  });

  it('shares a host directory between two containers of the pod, as an emptyDir', async () => {
    const shared = mkdtempSync(join(volumes, 'empty-dir-'));
    chmodSync(shared, 0o777);
    await withPod(env.podConfig({ name: 'appkernel-empty-dir' }), async (run) => {
      const mounted = (name: string, script: string) => {
        const config = shell(name, script);
        config.mounts = [create(MountSchema, { containerPath: '/cache', hostPath: shared })];
        return config;
      };
      const reader = await startRunning(env, run, mounted('reader', 'while [ ! -f /cache/msg ]; do sleep 0.1; done; cat /cache/msg'));
      const writer = await runToExit(env, run, mounted('writer', 'echo from-writer > /cache/msg.tmp && mv /cache/msg.tmp /cache/msg'));
      assert.equal(writer.status.exitCode, 0);
      const status = await env.cri.waitForContainerState(reader.containerId, ContainerState.CONTAINER_EXITED, { timeoutMs: 30_000 });
      assert.equal(status.exitCode, 0);
      const log = readFileSync(join(run.pod.logDirectory, 'reader.log'), 'utf8');
      assert.match(log, / stdout F from-writer$/m, 'the reader saw what the writer wrote');
    });
  });
});
