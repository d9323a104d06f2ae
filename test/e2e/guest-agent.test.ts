// The guest agent run on the host (not as PID 1) with --listen, driven through the typed ttrpc
// client as kuasard drives it in a VM: real busybox containers through the host's runc, their
// stdio, exits and signals; the errors it answers; garbage it survives. Nothing of it remains.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import net from 'node:net';
import { release, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';

import { Agent, StdioStream } from '../../src/api/kuasar/agent/v1/agent_pb.js';
import { Code, RuntimeError } from '../../src/base/errors.js';
import { fuzzParameters } from '../../src/devenv/fuzz.js';
import { cgroupPlaces, detectCgroupLayout, existingCgroupDirs, removeCgroup } from '../../src/linux/cgroups.js';
import { mountsUnder } from '../../src/linux/mountinfo.js';
import { unpinPodNamespaces } from '../../src/linux/namespaces.js';
import { encodeHeader } from '../../src/rpc/ttrpc/frame.js';
import { TtrpcClient, typedClient, type TypedClient } from '../../src/rpc/ttrpc/index.js';

const skip = process.getuid?.() !== 0 && 'needs root';
const AGENT_MAIN = path.resolve(import.meta.dirname, '../../src/guest/agent/main.js');
const PID_HOLDER = path.resolve(import.meta.dirname, '../../native/kuasar-idle');
const PACKAGE_VERSION = (
  JSON.parse(readFileSync(path.resolve(import.meta.dirname, '../../../package.json'), 'utf8')) as { version: string }
).version;
const capabilities = ['CAP_KILL', 'CAP_AUDIT_WRITE'];
/** A /dev of the container's own with its own devpts, as CRI's spec has: runc opens the terminal there. */
const TERMINAL_MOUNTS = [
  { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
  { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
];

type AgentClient = TypedClient<typeof Agent.method>;

async function rejectsWith(promise: Promise<unknown>, code: Code): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof RuntimeError, `expected a RuntimeError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('guest agent on the host', { skip }, () => {
  let base: string;
  let rootfs: string;
  let stateDir: string;
  let socketPath: string;
  let agentProcess: ChildProcess;
  let agentExit: Promise<[number | null, NodeJS.Signals | null]>;
  let agentLog = '';
  let client: TtrpcClient;
  let agent: AgentClient;
  const cgroupParent = `/kuasar-agent-e2e-${process.pid}`;
  const created = new Set<string>();
  /** The PID namespace holder SetupSandbox started: it outlives the agent, as in the guest. */
  let holderPid: number | undefined;

  /**
   * `namespaces`: joined by path, or left out with no path (then the host's): the others are new.
   * A signal reaches a PID namespace's init only if it handles it, hence the host's for kill tests.
   * `terminal`: the process gets one, which runc makes on the container's own devpts.
   */
  function spec(id: string, args: string[], namespaces: { type: string; path?: string }[] = [], terminal = false): Uint8Array {
    const named = new Set(namespaces.map((n) => n.type));
    return Buffer.from(
      JSON.stringify({
        ociVersion: '1.0.2',
        process: {
          terminal,
          user: { uid: 0, gid: 0 },
          args,
          env: ['PATH=/bin'],
          cwd: '/',
          capabilities: { bounding: capabilities, effective: capabilities, permitted: capabilities },
          noNewPrivileges: true,
        },
        root: { path: rootfs, readonly: true },
        mounts: [{ destination: '/proc', type: 'proc', source: 'proc' }, ...(terminal ? TERMINAL_MOUNTS : [])],
        linux: {
          namespaces: [
            ...namespaces.filter((n) => n.path),
            ...['pid', 'ipc', 'uts', 'mount', 'network'].filter((type) => !named.has(type)).map((type) => ({ type })),
          ],
          cgroupsPath: `${cgroupParent}/${id}`,
        },
      }),
    );
  }

  async function create(
    id: string,
    args: string[],
    stdio = { stdin: false, stdout: false, stderr: false, terminal: false },
    namespaces: { type: string; path?: string }[] = [],
  ) {
    const response = await agent.createContainer({ containerId: id, specJson: spec(id, args, namespaces, stdio.terminal), stdio });
    created.add(id);
    return response.pid;
  }

  async function remove(id: string): Promise<void> {
    await agent.deleteContainer({ containerId: id });
    created.delete(id);
  }

  async function readAll(id: string, stream: StdioStream, execId = ''): Promise<string> {
    const chunks: Uint8Array[] = [];
    for (;;) {
      const { data, eof } = await agent.readStdio({ containerId: id, execId, stream, maxBytes: 3 });
      if (eof) return Buffer.concat(chunks).toString();
      assert.ok(data.length > 0 && data.length <= 3, `a chunk of ${data.length} bytes`);
      chunks.push(data);
    }
  }

  /** What a process wrote on its terminal (STDOUT), read as far as needed. */
  function terminalOutput(id: string, execId = '') {
    let text = '';
    let ended = false;
    const readMore = async (): Promise<void> => {
      const { data, eof } = await agent.readStdio({ containerId: id, execId, stream: StdioStream.STDOUT });
      text += Buffer.from(data).toString();
      ended = eof;
    };
    return {
      /** Reads until `pattern` matches what came so far; fails if the output ends first. */
      async until(pattern: RegExp): Promise<string> {
        while (!pattern.test(text)) {
          assert.equal(ended, false, `the terminal's output ended before ${pattern}: ${JSON.stringify(text)}`);
          await readMore();
        }
        return text;
      },
      /** Reads to the end: everything, once every holder of the terminal's other side is gone. */
      async all(): Promise<string> {
        while (!ended) await readMore();
        return text;
      },
    };
  }

  before(async () => {
    base = await mkdtemp(path.join(tmpdir(), 'kuasar-agent-e2e-'));
    rootfs = path.join(base, 'rootfs');
    stateDir = path.join(base, 'state');
    socketPath = path.join(base, 'agent.sock');
    await mkdir(path.join(rootfs, 'bin'), { recursive: true });
    for (const sub of ['proc', 'dev', 'tmp']) await mkdir(path.join(rootfs, sub));
    await copyFile('/bin/busybox', path.join(rootfs, 'bin', 'busybox'));
    for (const applet of ['sh', 'sleep', 'cat', 'echo', 'hostname', 'tty', 'stty'])
      await symlink('busybox', path.join(rootfs, 'bin', applet));

    agentProcess = spawn(
      process.execPath,
      [AGENT_MAIN, '--listen', socketPath, '--state-dir', stateDir, '--pid-holder', PID_HOLDER, '--log-level', 'debug'],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    agentExit = once(agentProcess, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    agentProcess.stderr!.on('data', (chunk: Buffer) => {
      agentLog += chunk.toString();
    });
    while (!existsSync(socketPath)) {
      assert.equal(agentProcess.exitCode, null, `the agent exited: ${agentLog}`);
      await sleep(20);
    }
    client = await TtrpcClient.connect(socketPath);
    agent = typedClient(client, Agent);
  });

  after(async () => {
    for (const id of created) await agent.deleteContainer({ containerId: id }).catch(() => undefined);
    client?.close();
    const stillRunning = agentProcess.exitCode === null && agentProcess.signalCode === null;
    agentProcess.kill('SIGTERM');
    const [code] = await agentExit;
    if (holderPid) {
      process.kill(holderPid, 'SIGKILL');
      while (existsSync(`/proc/${holderPid}`)) await sleep(20);
    }
    await unpinPodNamespaces(path.join(stateDir, 'ns')).catch(() => undefined);
    await removeCgroup(cgroupParent).catch(() => undefined);
    const leftMounts = await mountsUnder(base);
    await rm(base, { recursive: true, force: true });
    assert.ok(stillRunning, `the agent had exited before the end: ${agentLog.slice(-2000)}`);
    assert.equal(code, 0, 'the agent stops cleanly on SIGTERM');
    assert.deepEqual(
      leftMounts.map((m) => m.mountPoint),
      [],
    );
    assert.deepEqual(await existingCgroupDirs(cgroupParent), [], 'no cgroup of a container remains');
  });

  it('Check says what runs: boot id, kernel, agent version, uptime', async () => {
    const facts = await agent.check({});
    assert.equal(facts.bootId, readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
    assert.equal(facts.kernelRelease, release());
    assert.equal(facts.agentVersion, PACKAGE_VERSION);
    assert.ok(facts.uptimeSeconds > 0);
  });

  it('runs a container: stdout and stderr read back, exit code 3, then deleted with its bundle', async () => {
    const id = 'echo';
    const pid = await create(id, ['sh', '-c', 'echo out; echo err >&2; exit 3'], {
      stdin: false,
      stdout: true,
      stderr: true,
      terminal: false,
    });
    assert.ok(pid > 0);
    assert.equal((await agent.containerState({ containerId: id })).status, 'created');
    assert.ok(existsSync(path.join(stateDir, 'bundles', id, 'config.json')));
    assert.equal((await agent.startContainer({ containerId: id })).pid, pid);
    const [stdout, stderr, exit] = await Promise.all([
      readAll(id, StdioStream.STDOUT),
      readAll(id, StdioStream.STDERR),
      agent.waitProcess({ containerId: id }),
    ]);
    assert.equal(stdout, 'out\n');
    assert.equal(stderr, 'err\n');
    assert.equal(exit.exitStatus, 3);
    const exitedAtMs = Number(exit.exitedAtNs / 1_000_000n);
    assert.ok(Math.abs(Date.now() - exitedAtMs) < 60_000, 'exited_at is a time of today');
    assert.equal((await agent.containerState({ containerId: id })).status, 'stopped');
    // A wait after the exit answers at once, with the same status.
    assert.equal((await agent.waitProcess({ containerId: id })).exitStatus, 3);
    await remove(id);
    assert.equal(existsSync(path.join(stateDir, 'bundles', id)), false, 'the bundle is removed');
    await rejectsWith(agent.containerState({ containerId: id }), Code.NotFound);
  });

  it('answers reads by position again to the next host until one says it was delivered (a host that died loses nothing), and refuses a position past the output', async () => {
    const id = 'positions';
    await create(id, ['sh', '-c', 'echo first; echo second'], { stdin: false, stdout: true, stderr: false, terminal: false });
    await agent.startContainer({ containerId: id });
    await agent.waitProcess({ containerId: id });
    const read = (host: AgentClient, offset: bigint, delivered: bigint) =>
      host.readStdio({ containerId: id, stream: StdioStream.STDOUT, maxBytes: 6, offset, delivered });
    const shown = (reply: { data: Uint8Array; eof: boolean; offset: bigint }) => [
      Buffer.from(reply.data).toString(),
      reply.eof,
      reply.offset,
    ];
    assert.deepEqual(shown(await read(agent, 0n, 0n)), ['first\n', false, 0n]);
    // This host goes away before it writes out what it read: the next one knows nothing and reads from 0.
    const nextClient = await TtrpcClient.connect(socketPath);
    try {
      const next = typedClient(nextClient, Agent);
      assert.deepEqual(shown(await read(next, 0n, 0n)), ['first\n', false, 0n], 'what the first host never delivered comes again');
      assert.deepEqual(shown(await read(next, 6n, 6n)), ['second', false, 6n]);
      await rejectsWith(read(next, 20n, 6n), Code.InvalidArgument);
      await rejectsWith(read(next, 6n, 12n), Code.InvalidArgument);
      assert.deepEqual(shown(await read(next, 0n, 0n)), ['second', false, 6n], 'what was delivered is forgotten');
      assert.deepEqual(shown(await read(next, 13n, 12n)), ['', true, 13n]);
    } finally {
      nextClient.close();
    }
    await remove(id);
  });

  it('stdin written and then closed reaches cat', async () => {
    const id = 'cat';
    await create(id, ['cat'], { stdin: true, stdout: true, stderr: false, terminal: false });
    await agent.startContainer({ containerId: id });
    await agent.writeStdin({ containerId: id, data: Buffer.from('hello ') });
    await agent.writeStdin({ containerId: id, data: Buffer.from('world') });
    await agent.closeStdin({ containerId: id });
    await rejectsWith(agent.writeStdin({ containerId: id, data: Buffer.from('late') }), Code.FailedPrecondition);
    assert.equal(await readAll(id, StdioStream.STDOUT), 'hello world');
    assert.equal((await agent.waitProcess({ containerId: id })).exitStatus, 0);
    await rejectsWith(agent.readStdio({ containerId: id, stream: StdioStream.STDERR }), Code.FailedPrecondition);
    await remove(id);
  });

  it('lists pids and kills with SIGTERM (143); a long wait does not hold up other calls; orphans are reaped', async () => {
    const id = 'sleeper';
    const noStdio = { stdin: false, stdout: false, stderr: false, terminal: false };
    const pid = await create(id, ['sh', '-c', 'sleep 1000 & wait'], noStdio, [{ type: 'pid' }]);
    await agent.startContainer({ containerId: id });
    const waiting = agent.waitProcess({ containerId: id });
    // Answered while the wait is pending on the same connection.
    await agent.check({});
    let pids: number[] = [];
    // sh and its sleep, once sh has forked it.
    while (pids.length < 2) pids = (await agent.listPids({ containerId: id })).pids;
    assert.ok(pids.includes(pid), `init ${pid} among ${pids.join(',')}`);
    assert.equal(pids.length, 2);
    await agent.killContainer({ containerId: id, signal: 15, all: false });
    assert.equal((await waiting).exitStatus, 143);
    // runc delete kills the orphaned sleep (the container has no PID namespace to end with its
    // init); it was re-parented to the agent, which reaps it: not even a zombie remains.
    await remove(id);
    for (const p of pids) while (existsSync(`/proc/${p}`)) await sleep(50);
  });

  it('runs execs in a running container: output, exit code, a signal, then forgotten; bad requests answered with codes', async () => {
    const id = 'exec-host';
    await create(id, ['sleep', '1000'], { stdin: false, stdout: false, stderr: false, terminal: false }, [{ type: 'pid' }]);
    await agent.startContainer({ containerId: id });
    const stdio = { stdin: false, stdout: true, stderr: true, terminal: false };
    const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
    const process = (args: string[]) => json({ args, cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 } });
    const pid = (
      await agent.execProcess({
        containerId: id,
        execId: 'e1',
        processJson: process(['sh', '-c', 'echo from-exec; echo to-err >&2; exit 4']),
        stdio,
      })
    ).pid;
    assert.ok(pid > 0);
    const [stdout, stderr, exit] = await Promise.all([
      readAll(id, StdioStream.STDOUT, 'e1'),
      readAll(id, StdioStream.STDERR, 'e1'),
      agent.waitProcess({ containerId: id, execId: 'e1' }),
    ]);
    assert.deepEqual([stdout, stderr, exit.exitStatus], ['from-exec\n', 'to-err\n', 4]);
    await rejectsWith(agent.killProcess({ containerId: id, execId: 'e1', signal: 15 }), Code.NotFound);
    await agent.deleteProcess({ containerId: id, execId: 'e1' });
    await rejectsWith(agent.waitProcess({ containerId: id, execId: 'e1' }), Code.NotFound);

    await agent.execProcess({ containerId: id, execId: 'e2', processJson: process(['sleep', '1000']), stdio });
    await rejectsWith(agent.execProcess({ containerId: id, execId: 'e2', processJson: process(['true']), stdio }), Code.AlreadyExists);
    await agent.killProcess({ containerId: id, execId: 'e2', signal: 15 });
    assert.equal((await agent.waitProcess({ containerId: id, execId: 'e2' })).exitStatus, 143);
    await agent.deleteProcess({ containerId: id, execId: 'e2' });

    await rejectsWith(agent.execProcess({ containerId: id, execId: 'e3', processJson: json({ args: [] }), stdio }), Code.InvalidArgument);
    await rejectsWith(
      agent.execProcess({ containerId: id, execId: 'e3', processJson: new Uint8Array([1, 2]), stdio }),
      Code.InvalidArgument,
    );
    await rejectsWith(agent.execProcess({ containerId: id, execId: '../x', processJson: process(['true']), stdio }), Code.InvalidArgument);
    await rejectsWith(agent.execProcess({ containerId: 'nobody', execId: 'e4', processJson: process(['true']), stdio }), Code.NotFound);
    await remove(id);
  });

  it("gives a container and an exec a terminal: its output, /dev/pts name, a resize read back, typed input, CloseStdin's end-of-file", async () => {
    const id = 'term';
    const terminal = { stdin: true, stdout: true, stderr: false, terminal: true };
    const awaitResize = 'while [ "$(stty size)" != "40 100" ]; do sleep 0.05; done; echo size=$(stty size)';
    await create(id, ['sh', '-c', `tty; ${awaitResize}; cat; echo cat-ended; exit 6`], terminal, [{ type: 'pid' }]);
    await agent.startContainer({ containerId: id });
    const output = terminalOutput(id);
    const ttyName = /^(\/dev\/pts\/\d+)\r\n/.exec(await output.until(/\r\n/))?.[1];
    assert.ok(ttyName, 'the init runs on a terminal of its own');
    await agent.resizePty({ containerId: id, width: 100, height: 40 });
    await output.until(/size=40 100\r\n/);
    // Typed, echoed by the terminal, then written back by cat; stdout and stderr are one stream.
    await agent.writeStdin({ containerId: id, data: Buffer.from('hello\n') });
    await output.until(/size=40 100\r\nhello\r\nhello\r\n/);
    await rejectsWith(agent.readStdio({ containerId: id, stream: StdioStream.STDERR }), Code.FailedPrecondition);
    await rejectsWith(agent.resizePty({ containerId: id, width: 70_000, height: 40 }), Code.InvalidArgument);

    // An exec gets a terminal of its own next to the init's.
    const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
    const processJson = json({ terminal: true, args: ['sh', '-c', 'tty; exit 4'], cwd: '/', env: ['PATH=/bin'], user: { uid: 0, gid: 0 } });
    await agent.execProcess({ containerId: id, execId: 'e1', processJson, stdio: { ...terminal, stdin: false } });
    const execOutput = await terminalOutput(id, 'e1').all();
    assert.match(execOutput, /^\/dev\/pts\/\d+\r\n$/);
    assert.notEqual(execOutput.trim(), ttyName, "the exec's terminal is not the init's");
    assert.equal((await agent.waitProcess({ containerId: id, execId: 'e1' })).exitStatus, 4);
    await rejectsWith(agent.writeStdin({ containerId: id, execId: 'e1', data: Buffer.from('x') }), Code.FailedPrecondition);
    await agent.deleteProcess({ containerId: id, execId: 'e1' });

    // CloseStdin: the end-of-file character; cat ends, and the output ends once the init has.
    await agent.closeStdin({ containerId: id });
    await rejectsWith(agent.writeStdin({ containerId: id, data: Buffer.from('late') }), Code.FailedPrecondition);
    assert.match(await output.all(), /hello\r\nhello\r\ncat-ended\r\n$/);
    assert.equal((await agent.waitProcess({ containerId: id })).exitStatus, 6);
    // A process without a terminal has nothing to resize: no error, as with runc's shim.
    await create('no-term', ['sleep', '1000']);
    await agent.resizePty({ containerId: 'no-term', width: 80, height: 24 });
    await remove('no-term');
    await remove(id);
    assert.deepEqual(await readdir(path.join(stateDir, 'console')), [], 'no console socket is left');
  });

  it("works on the container's cgroup: its figures, its limits updated, frozen and thawed, its OOM kills told apart", async (t) => {
    const layout = await detectCgroupLayout();
    // The agent reads cgroup v2 (the guest's only kind); a host without a cgroup2 tree has none.
    if (!layout.hierarchies.some((h) => h.version === 2)) return t.skip('no cgroup2 tree on this host');
    const unified = layout.mode === 'unified';
    /** A file of the container's cgroup on this host: in the v1 controller's hierarchy, or the unified directory. */
    const cgroupFile = async (id: string, file: { v1: [controller: string, name: string]; v2: string }) => {
      const places = await cgroupPlaces(`${cgroupParent}/${id}`, layout);
      const place = unified
        ? places.find((p) => p.hierarchy.version === 2)
        : places.find((p) => p.hierarchy.controllers.includes(file.v1[0]));
      assert.ok(place, `a cgroup for ${JSON.stringify(file)}`);
      return readFileSync(path.join(place.dir, unified ? file.v2 : file.v1[1]), 'utf8').trim();
    };
    const withResources = (id: string, args: string[], resources: object) => {
      const config = JSON.parse(Buffer.from(spec(id, args)).toString()) as { linux: Record<string, unknown> };
      config.linux.resources = resources;
      return Buffer.from(JSON.stringify(config));
    };
    const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

    const id = 'cgroup-user';
    await create(id, ['sh', '-c', 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 1000']);
    await agent.startContainer({ containerId: id });
    // On a hybrid host the cgroup2 tree holds no controller: its core cpu.stat is all there is.
    let usage = 0n;
    for (let tries = 0; usage === 0n && tries < 600; tries++) {
      usage = (await agent.containerStats({ containerId: id })).metrics?.cpu?.usageUsec ?? 0n;
      if (usage === 0n) await sleep(50);
    }
    assert.ok(usage > 0n, 'the loop used CPU, in the cgroup the agent reads');
    if (unified) assert.ok(((await agent.containerStats({ containerId: id })).metrics?.memory?.usage ?? 0n) > 0n);

    await agent.updateContainer({ containerId: id, resourcesJson: json({ memory: { limit: 64 * 1024 * 1024 }, pids: { limit: 50 } }) });
    assert.equal(await cgroupFile(id, { v1: ['memory', 'memory.limit_in_bytes'], v2: 'memory.max' }), String(64 * 1024 * 1024));
    assert.equal(await cgroupFile(id, { v1: ['pids', 'pids.max'], v2: 'pids.max' }), '50');
    await rejectsWith(agent.updateContainer({ containerId: id, resourcesJson: Buffer.from('[1]') }), Code.InvalidArgument);

    await agent.pauseContainer({ containerId: id });
    assert.equal((await agent.containerState({ containerId: id })).status, 'paused');
    assert.ok(['1', 'FROZEN'].includes(await cgroupFile(id, { v1: ['freezer', 'freezer.state'], v2: 'cgroup.freeze' })), 'frozen');
    await agent.resumeContainer({ containerId: id });
    assert.equal((await agent.containerState({ containerId: id })).status, 'running');
    await agent.killContainer({ containerId: id, signal: 9, all: false });
    const killed = await agent.waitProcess({ containerId: id });
    assert.deepEqual([killed.exitStatus, killed.oomKilled], [137, false], "a SIGKILL that is not the OOM killer's");
    await remove(id);

    const hog = 'oom-hog';
    const limit = 32 * 1024 * 1024;
    await agent.createContainer({
      containerId: hog,
      specJson: withResources(hog, ['busybox', 'dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'], {
        memory: { limit, swap: limit },
      }),
    });
    created.add(hog);
    await agent.startContainer({ containerId: hog });
    const oom = await agent.waitProcess({ containerId: hog });
    assert.deepEqual([oom.exitStatus, oom.oomKilled], [137, true], 'killed at its memory limit');
    await remove(hog);

    await rejectsWith(agent.containerStats({ containerId: 'nobody' }), Code.NotFound);
    await rejectsWith(agent.pauseContainer({ containerId: 'nobody' }), Code.NotFound);
    await rejectsWith(agent.updateContainer({ containerId: 'nobody', resourcesJson: json({}) }), Code.NotFound);
  });

  it('deletes a container that was created and never started', async () => {
    const id = 'never-started';
    const pid = await create(id, ['sleep', '1000']);
    await remove(id);
    assert.equal(existsSync(`/proc/${pid}`), false);
  });

  it('answers errors with codes: NotFound, InvalidArgument, AlreadyExists', async () => {
    await rejectsWith(agent.containerState({ containerId: 'nobody' }), Code.NotFound);
    await rejectsWith(agent.deleteContainer({ containerId: 'nobody' }), Code.NotFound);
    await rejectsWith(agent.waitProcess({ containerId: 'nobody' }), Code.NotFound);
    await rejectsWith(agent.containerState({ containerId: '../etc' }), Code.InvalidArgument);
    await rejectsWith(agent.containerState({ containerId: '' }), Code.InvalidArgument);
    await rejectsWith(agent.createContainer({ containerId: 'bad-spec', specJson: Buffer.from('{not json') }), Code.InvalidArgument);
    await rejectsWith(agent.createContainer({ containerId: 'no-root', specJson: Buffer.from('{"process":{}}') }), Code.InvalidArgument);
    await rejectsWith(agent.killContainer({ containerId: 'nobody', signal: 0, all: false }), Code.InvalidArgument);
    await rejectsWith(agent.readStdio({ containerId: 'nobody', stream: StdioStream.UNSPECIFIED }), Code.InvalidArgument);
    // A terminal asked for by the stdio but not by the spec (and the other way round) is refused before runc runs.
    await rejectsWith(
      agent.createContainer({
        containerId: 'tty',
        specJson: spec('tty', ['sh']),
        stdio: { stdin: true, stdout: true, stderr: false, terminal: true },
      }),
      Code.InvalidArgument,
    );
    await rejectsWith(
      agent.createContainer({
        containerId: 'tty',
        specJson: spec('tty', ['sh'], [], true),
        stdio: { stdin: true, stdout: true, stderr: false, terminal: false },
      }),
      Code.InvalidArgument,
    );
    await rejectsWith(agent.resizePty({ containerId: 'nobody', width: 80, height: 24 }), Code.NotFound);

    const id = 'twice';
    await create(id, ['sleep', '1000']);
    await rejectsWith(agent.createContainer({ containerId: id, specJson: spec(id, ['sleep', '1']) }), Code.AlreadyExists);
    await rejectsWith(agent.waitProcess({ containerId: id, execId: 'exec1' }), Code.NotFound);
    await remove(id);
    assert.deepEqual(await readdir(path.join(stateDir, 'bundles')), [], 'failed creates leave no bundle');
  });

  it('sets up the sandbox: pinned IPC and UTS namespaces with the hostname and sysctls, a PID namespace holder, /etc files', async () => {
    const response = await agent.setupSandbox({
      sandboxId: 'pod-0123456789abcdef',
      hostname: '',
      hosts: '127.0.0.1 localhost\n',
      resolvConf: 'nameserver 10.0.0.1\n',
      sharePidNamespace: true,
      sysctls: { 'kernel.shmmni': '1234' },
    });
    assert.equal(response.ipcNamespace, path.join(stateDir, 'ns', 'ipc'));
    assert.equal(response.utsNamespace, path.join(stateDir, 'ns', 'uts'));
    const holder = /^\/proc\/(\d+)\/ns\/pid$/.exec(response.pidNamespace);
    assert.ok(holder, response.pidNamespace);
    holderPid = Number(holder[1]);
    assert.equal(readFileSync(`/proc/${holderPid}/comm`, 'utf8'), 'kuasar-idle\n');
    assert.equal(readFileSync(path.join(stateDir, 'etc', 'hostname'), 'utf8'), 'pod-01234567\n');
    assert.equal(readFileSync(path.join(stateDir, 'etc', 'resolv.conf'), 'utf8'), 'nameserver 10.0.0.1\n');
    assert.notEqual(readFileSync('/proc/sys/kernel/shmmni', 'utf8').trim(), '1234', 'the host keeps its own value');
    await rejectsWith(agent.setupSandbox({ sandboxId: 'pod-0123456789abcdef' }), Code.AlreadyExists);

    const id = 'in-pod';
    const namespaces = [
      { type: 'ipc', path: response.ipcNamespace },
      { type: 'uts', path: response.utsNamespace },
      { type: 'pid', path: response.pidNamespace },
    ];
    await agent.createContainer({
      containerId: id,
      specJson: spec(id, ['sh', '-c', 'hostname; cat /proc/sys/kernel/shmmni /proc/1/comm'], namespaces),
      stdio: { stdin: false, stdout: true, stderr: false, terminal: false },
    });
    created.add(id);
    await agent.startContainer({ containerId: id });
    assert.equal(await readAll(id, StdioStream.STDOUT), 'pod-01234567\n1234\nkuasar-idle\n');
    assert.equal((await agent.waitProcess({ containerId: id })).exitStatus, 0);
    await remove(id);
  });

  it('SyncClock refuses to set the clock outside a VM', async () => {
    await rejectsWith(agent.syncClock({ hostTimeNs: BigInt(Date.now()) * 1_000_000n }), Code.FailedPrecondition);
    await rejectsWith(agent.syncClock({ hostTimeNs: 0n }), Code.InvalidArgument);
  });

  it('SetupNetwork checks what it is sent, and refuses to touch the network outside a VM', async () => {
    const nic = { name: 'eth0', mac: '0a:58:0a:58:00:05', mtu: 1450, addresses: ['10.88.0.5/16'] };
    const route = { destination: 'default', gateway: '10.88.0.1', device: 'eth0', family: 4 };
    await rejectsWith(agent.setupNetwork({ interfaces: [nic], routes: [route] }), Code.FailedPrecondition);
    await rejectsWith(agent.setupNetwork({ interfaces: [{ ...nic, mac: 'not-a-mac' }] }), Code.InvalidArgument);
    await rejectsWith(agent.setupNetwork({ interfaces: [{ ...nic, name: 'eth0; reboot' }] }), Code.InvalidArgument);
    await rejectsWith(agent.setupNetwork({ interfaces: [{ ...nic, addresses: ['10.88.0.5'] }] }), Code.InvalidArgument);
    await rejectsWith(agent.setupNetwork({ routes: [{ ...route, family: 5 }] }), Code.InvalidArgument);
  });

  it('survives garbage: undecodable payloads are answered, broken frames cost only their connection', async () => {
    const methods = Agent.methods.map((m) => m.name);
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...methods), fc.uint8Array({ maxLength: 64 }), async (method, payload) => {
        try {
          await client.call(Agent.typeName, method, payload);
        } catch (err) {
          assert.ok(err instanceof RuntimeError, String(err));
          assert.ok(
            [Code.InvalidArgument, Code.NotFound, Code.FailedPrecondition, Code.AlreadyExists, Code.Unimplemented].includes(err.code),
            `${method}: ${err.message}`,
          );
        }
      }),
      fuzzParameters(100),
    );
    const frame = fc.record({
      streamId: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      type: fc.integer({ min: 0, max: 255 }),
      flags: fc.integer({ min: 0, max: 255 }),
      payload: fc.uint8Array({ maxLength: 100 }),
    });
    const garbage = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 200 }),
      fc
        .array(frame, { minLength: 1, maxLength: 4 })
        .map((frames) => Buffer.concat(frames.flatMap((f) => [encodeHeader(f.streamId, f.type, f.flags, f.payload.length), f.payload]))),
    );
    await fc.assert(
      fc.asyncProperty(garbage, async (bytes) => {
        const socket = net.createConnection(socketPath);
        await once(socket, 'connect');
        socket.on('error', () => undefined);
        socket.end(bytes);
        socket.resume();
        await once(socket, 'close');
        const fresh = await TtrpcClient.connect(socketPath);
        try {
          await typedClient(fresh, Agent).check({});
        } finally {
          fresh.close();
        }
        assert.equal(agentProcess.exitCode, null, 'the agent is still running');
      }),
      fuzzParameters(100),
    );
    // The first connection is still served.
    await agent.check({});
  });
});
