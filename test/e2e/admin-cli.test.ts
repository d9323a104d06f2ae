// `kuasar ps`, `inspect` and `exec`, the real command (dist/src/cli/kuasar.js) against a real
// kuasard serving the runc and vmm kinds, with pods started through CRI: what the commands print
// is checked against the pods' ids, states, container counts and pids as CRI and the host tell
// them; a command runs in a vmm pod's guest, outside its containers. The admin socket is root's
// only, refuses what is wrong with a clear error, and kuasard goes on serving; nothing is left.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { askKuasard } from '../../src/cli/admin-client.js';
import { shortId } from '../../src/cli/admin-format.js';
import type { ContainerDetails, PsResponse, SandboxDetails, SandboxSummary } from '../../src/daemon/admin-api.js';
import { renderKuasardConfigWith } from '../../src/devenv/config.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { diffHost, NO_LEAKS, snapshotHost, type HostSnapshot } from '../../src/devenv/leaks.js';
import { runPod, startRunning, type PodRun } from '../../src/devenv/pod-runs.js';
import { containerConfig } from '../../src/devenv/pods.js';
import { vmProcesses } from '../../src/devenv/vm-processes.js';
import { DEFAULT_IMAGE_DIR, readManifest } from '../../src/guest/image/layout.js';
import { KIND_NAMES } from '../../src/kinds/index.js';

const KUASAR = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/cli/kuasar.js');
/** The runc and vmm kinds: the one with pods on the host, the one with a guest to run a command in. */
const RUNC_AND_VMM = Object.fromEntries(KIND_NAMES.filter((k) => k !== 'runc' && k !== 'vmm').map((k) => [k, { enabled: false }]));
/** An unprivileged user, for the admin socket's refusal. */
const NOBODY = 65534;

interface Outcome {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('kuasar ps, inspect and exec', () => {
  let env: Environment;
  let hostBefore: HostSnapshot;
  let socket: string;

  before(async () => {
    hostBefore = snapshotHost();
    env = await startEnvironment({ kuasardConfig: renderKuasardConfigWith(RUNC_AND_VMM, true) });
    socket = join(env.paths.kuasarState, 'admin.sock');
  });

  after(async () => {
    await env?.stop();
    if (env) assert.deepEqual(diffHost(hostBefore, snapshotHost(), { scope: env.scope }), NO_LEAKS);
    if (socket) assert.equal(existsSync(socket), false, 'the admin socket went with kuasard');
  });

  /** Runs `kuasar <args> --state-dir <the environment's>`, as root or as `uid`. */
  function kuasar(args: readonly string[], options: { uid?: number } = {}): Promise<Outcome> {
    const [command, ...rest] = args;
    return new Promise((resolvePromise, reject) => {
      const child = spawn(process.execPath, [KUASAR, command!, '--state-dir', env.paths.kuasarState, ...rest], {
        stdio: ['ignore', 'pipe', 'pipe'],
        ...(options.uid === undefined ? {} : { uid: options.uid, gid: options.uid }),
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
    });
  }

  async function json<T>(args: readonly string[]): Promise<T> {
    const run = await kuasar([...args, '--json']);
    assert.equal(run.code, 0, run.stderr);
    return JSON.parse(run.stdout) as T;
  }

  const sandboxIn = (ps: PsResponse, id: string): SandboxSummary => {
    const found = ps.sandboxes.find((s) => s.id === id);
    assert.ok(found, `kuasar ps lists ${id}: ${JSON.stringify(ps.sandboxes.map((s) => s.id))}`);
    return found;
  };

  /** The pid CRI's verbose pod status names (the controller's record of it). */
  async function criPid(podSandboxId: string): Promise<number> {
    const { info } = await env.cri.runtime.podSandboxStatus({ podSandboxId, verbose: true });
    return (JSON.parse(info['info'] ?? '{}') as { pid: number }).pid;
  }

  async function withPod(name: string, kind: string, body: (run: PodRun) => Promise<void>): Promise<void> {
    const { leaks } = await runPod(env, env.handlers.kuasar[kind]!, env.podConfig({ name }), [env.paths.kuasarState], body);
    assert.deepEqual(leaks, NO_LEAKS, 'the pod left nothing behind');
  }

  it('lists no sandbox, and the kinds served, before any pod; the socket is 0600 and root’s', async () => {
    const ps = await json<PsResponse>(['ps']);
    assert.deepEqual(ps, { kinds: ['runc', 'vmm'], sandboxes: [], warmPools: [] });
    const human = await kuasar(['ps']);
    assert.equal(human.stdout, 'no sandboxes (kuasard serves runc, vmm)\n');
    const stat = statSync(socket);
    assert.ok(stat.isSocket());
    assert.equal(stat.mode & 0o777, 0o600);
    assert.equal(stat.uid, 0);
  });

  it('refuses anyone but root', async () => {
    const run = await kuasar(['ps'], { uid: NOBODY });
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^kuasar: permission denied on .*admin\.sock: kuasard's admin socket is root's only \(run this as root\)\n$/);
    assert.equal(run.stdout, '');
  });

  it('shows a runc pod and its containers as CRI runs them: ids, states, pids, directory, sockets, mounts', async () => {
    await withPod('admin-runc', 'runc', async (run) => {
      const sleeper = await startRunning(
        env,
        run,
        containerConfig({ name: 'sleeper', image: env.images.busybox, command: ['sleep', '3600'] }),
      );
      // CRI makes a task (kuasard's container) at StartContainer, and deletes it once it exited.
      const second = await startRunning(
        env,
        run,
        containerConfig({ name: 'second', image: env.images.busybox, command: ['sleep', '3600'] }),
      );

      const pod = sandboxIn(await json<PsResponse>(['ps']), run.podId);
      assert.equal(pod.kind, 'runc');
      assert.equal(pod.state, 'ready');
      assert.deepEqual(pod.pod, { namespace: run.pod.metadata!.namespace, name: 'admin-runc', uid: run.pod.metadata!.uid });
      assert.equal(pod.pid, await criPid(run.podId));
      assert.equal(pod.containers.length, 2);
      const byId = new Map(pod.containers.map((c) => [c.id, c]));
      assert.deepEqual([byId.get(sleeper.containerId)?.status, byId.get(sleeper.containerId)?.pid], ['running', sleeper.pid]);
      assert.deepEqual([byId.get(second.containerId)?.status, byId.get(second.containerId)?.pid], ['running', second.pid]);
      assert.equal(byId.get(second.containerId)?.exit, null);

      const table = (await kuasar(['ps'])).stdout.split('\n');
      const row = table.find((line) => line.includes(shortId(run.podId)));
      assert.match(row ?? '', /^runc +\S+ +\S+\/admin-runc +ready +\d+ +\d+s +2 \(running 2\)$/);

      const dir = join(env.paths.kuasarState, 'runc', run.podId);
      const details = await json<SandboxDetails>(['inspect', run.podId]);
      assert.equal(details.type, 'sandbox');
      assert.equal(details.dir, dir);
      assert.equal(details.taskAddress, `ttrpc+unix://${dir}/task.sock`);
      assert.ok(details.sockets.includes(join(dir, 'task.sock')), details.sockets.join());
      assert.ok(details.mounts.length > 0, 'the pod holds mounts (its pinned namespaces)');
      assert.ok(
        details.mounts.every((m) => m.mountPoint.startsWith(`${dir}/`) || m.mountPoint === dir),
        'every mount shown is below its directory',
      );
      assert.notEqual(details.kindState, null);
      assert.equal(details.spec.name, 'admin-runc');

      const container = await json<ContainerDetails>(['inspect', sleeper.containerId]);
      assert.deepEqual(
        [container.type, container.sandbox, container.status, container.pid],
        ['container', run.podId, 'running', sleeper.pid],
      );
      // The runc kind mounts a container's rootfs in its own directory of the sandbox's.
      assert.deepEqual(
        container.mounts.map((m) => [m.mountPoint, m.fsType]),
        [[join(dir, 'containers', sleeper.containerId, 'rootfs'), 'overlay']],
        "its rootfs, and none of the other container's mounts",
      );

      const byPrefix = await kuasar(['inspect', shortId(run.podId)]);
      assert.equal(byPrefix.code, 0, byPrefix.stderr);
      assert.match(byPrefix.stdout, new RegExp(`^sandbox ${run.podId} \\(runc\\)\n`));

      const exec = await kuasar(['exec', run.podId, 'uname']);
      assert.equal(exec.code, 1);
      assert.match(exec.stderr, /^kuasar: Unimplemented: sandbox \S+ is of the runc kind, whose pods have no machine of their own/);
    });
  });

  it('answers an unknown id, an unknown call and a bad request with why, and keeps serving', async () => {
    const unknown = await kuasar(['inspect', 'nosuchsandbox']);
    assert.equal(unknown.code, 1);
    assert.equal(unknown.stderr, 'kuasar: NotFound: sandbox or container nosuchsandbox: not found\n');
    const invalid = await kuasar(['inspect', '../etc']);
    assert.match(invalid.stderr, /^kuasar: InvalidArgument: sandbox or container id "..\/etc" is invalid/);

    await assert.rejects(
      askKuasard(socket, 'GET', '/v1/nope'),
      /^Error: NotFound: GET \/v1\/nope: the admin socket serves GET \/v1\/sandboxes/,
    );
    await assert.rejects(
      askKuasard(socket, 'POST', '/v1/exec/x', { argv: [], timeoutMs: 1000 }),
      /InvalidArgument: exec request: argv: argv names no program/,
    );
    await assert.rejects(
      askKuasard(socket, 'POST', '/v1/exec/x', { argv: ['true'], timeoutMs: 0 }),
      /InvalidArgument: exec request: timeoutMs/,
    );
    const notJson = await rawPost('/v1/exec/x', '{"argv": [');
    assert.equal(notJson.status, 400);
    assert.match(notJson.body, /"code":"InvalidArgument","message":"the request body is not JSON/);
    const huge = await rawPost('/v1/exec/x', 'x'.repeat(200_000));
    assert.equal(huge.status, 429);
    assert.match(huge.body, /has 200000 bytes, more than 65536/);

    assert.equal((await kuasar(['ps'])).code, 0, 'kuasard still answers');
  });

  it('shows a vmm pod with its QEMU and runs commands in its guest, outside its containers', async () => {
    const kernelRelease = (await readManifest(DEFAULT_IMAGE_DIR)).kernelRelease;
    await withPod('admin-vmm', 'vmm', async (run) => {
      const sleeper = await startRunning(
        env,
        run,
        containerConfig({ name: 'sleeper', image: env.images.busybox, command: ['sleep', '3600'] }),
      );
      const [qemu] = vmProcesses(env.scope, run.podId);
      assert.ok(qemu, 'the pod has its QEMU');

      const pod = sandboxIn(await json<PsResponse>(['ps']), run.podId);
      assert.deepEqual([pod.kind, pod.state, pod.pid], ['vmm', 'ready', qemu.pid]);
      assert.deepEqual(
        pod.containers.map((c) => [c.id, c.status]),
        [[sleeper.containerId, 'running']],
      );

      const details = await json<SandboxDetails>(['inspect', run.podId]);
      assert.equal((details.kindState?.data as { vm?: { pid: number } } | undefined)?.vm?.pid, qemu.pid, "the kind's state names its QEMU");
      for (const name of ['agent', 'qmp', 'task.sock'])
        assert.ok(details.sockets.includes(join(details.dir, name)), `${name}: ${details.sockets.join()}`);

      const uname = await kuasar(['exec', run.podId, 'uname', '-r']);
      assert.deepEqual(uname, { code: 0, stdout: `${kernelRelease}\n`, stderr: '' });
      // The guest's own PID namespace: its PID 1 is the agent (node), not the container's sleep.
      const init = await kuasar(['exec', run.podId, 'cat', '/proc/1/comm']);
      assert.deepEqual(init, { code: 0, stdout: 'node\n', stderr: '' });
      const shell = await kuasar(['exec', run.podId, '--', 'sh', '-c', 'echo out; echo err >&2; exit 7']);
      assert.deepEqual(shell, { code: 7, stdout: 'out\n', stderr: 'err\n' });
      const timedOut = await kuasar(['exec', '--timeout', '1', run.podId, 'sleep', '100']);
      assert.equal(timedOut.code, 137);
      assert.equal(timedOut.stderr, 'kuasar: the command was killed after 1 s\n');

      const missing = await kuasar(['exec', run.podId, 'no-such-program']);
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /^kuasar: NotFound: program "no-such-program" in the guest/);
      const ofContainer = await kuasar(['exec', sleeper.containerId, 'true']);
      assert.match(
        ofContainer.stderr,
        /^kuasar: InvalidArgument: \S+ is a container of sandbox \S+: kuasar exec runs a command in a pod's own machine/,
      );
    });
  });

  /** A POST with a body as it is, for what the client never sends. */
  function rawPost(path: string, body: string): Promise<{ status: number; body: string }> {
    return new Promise((resolvePromise, reject) => {
      const req = request({ socketPath: socket, path, method: 'POST' }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body: text }));
      });
      // A body refused before it was all sent may end the connection under the writer.
      req.on('error', reject);
      req.end(body);
    });
  }
});
