// Task sockets kept in the fd keeper across a crash of the process that served them: a child
// process serves a ttrpc socket and is killed; the test's client, connected before, goes on
// with the next "run" on the same connection. Shutdown lets go of everything; a hand-over at
// exit leaves everything; what no sandbox claims is released.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, constants, existsSync, openSync, writeSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Code } from '../../src/base/errors.js';
import { fdKeeperPids, listProcesses } from '../../src/devenv/processes.js';
import { KeptTaskSockets, MAX_KEPT_CALLS_PER_CONNECTION } from '../../src/daemon/kept-task-sockets.js';
import { closeKept, FD_KEEPER_BINARY, FdKeeper } from '../../src/linux/fd-keeper.js';
import { TtrpcClient, TtrpcServer } from '../../src/rpc/ttrpc/index.js';

const SERVICE = 'test.v1.Echo';
const DIST_SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');
const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString();
const bytes = (value: string): Uint8Array => Buffer.from(value);
const silent = pino({ level: 'silent' });

const isWait = (_service: string, method: string): boolean => method === 'Wait';

/** Echo answers `<label>:<payload>`; Wait (resumable) answers the same way. */
function echoServer(label: string, sockets: KeptTaskSockets, path: string): TtrpcServer {
  const server = new TtrpcServer({ resumable: isWait, ...sockets.hooks(path) });
  const echo = async ({ payload }: { payload: Uint8Array }) => bytes(`${label}:${text(payload)}`);
  server.register(SERVICE, { unary: { Echo: echo, Wait: echo } });
  return server;
}

/** The names the keeper holds now. */
async function keptNames(keeperPath: string): Promise<string[]> {
  const { keeper, kept } = await FdKeeper.open({ socketPath: keeperPath });
  keeper.close();
  closeKept(kept);
  return kept.map((k) => k.name).sort();
}

/** Resolves once the client's connection is gone (a call fails with Unavailable). */
async function connectionLost(client: TtrpcClient): Promise<boolean> {
  try {
    await client.call(SERVICE, 'Echo', bytes('?'), { timeoutMs: 2_000 });
    return false;
  } catch (err) {
    return (err as { code?: unknown }).code !== undefined;
  }
}

describe('task sockets kept across a crash', () => {
  let dir: string;
  let keeperPath: string;
  let runcDir: string;
  let socketPath: string;
  const cleanups: (() => Promise<void> | void)[] = [];

  /** KeptTaskSockets of this process: handed over after each test, so that none replaces the keeper the test kills. */
  async function openSockets(): Promise<KeptTaskSockets> {
    const sockets = await KeptTaskSockets.open(keeperPath, [runcDir], silent);
    cleanups.unshift(() => sockets.handOver());
    return sockets;
  }

  before(async () => {
    assert.ok(existsSync(FD_KEEPER_BINARY), `${FD_KEEPER_BINARY} is missing: run npm run build:native`);
    dir = await mkdtemp(join(tmpdir(), 'kept-sockets-'));
    keeperPath = join(dir, 'fd-keeper.sock');
    runcDir = join(dir, 'runc');
    await mkdir(join(runcDir, 'sb1'), { recursive: true });
    socketPath = join(runcDir, 'sb1', 'task.sock');
  });

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    for (const p of listProcesses().filter((p) => p.cmdline.includes(keeperPath) && p.state !== 'Z')) process.kill(p.pid, 'SIGKILL');
    await rm(socketPath, { force: true });
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * A first "run" in a child process, killed with SIGKILL once the client is connected and has
   * a Wait (resumable) and a Hang (not resumable) pending; neither ever answers there.
   */
  async function crashedRun(): Promise<{ client: TtrpcClient; waiting: Promise<Uint8Array>; hanging: Promise<Uint8Array> }> {
    const script = `
      import { pino } from 'pino';
      import { KeptTaskSockets } from ${JSON.stringify(join(DIST_SRC, 'daemon/kept-task-sockets.js'))};
      import { TtrpcServer } from ${JSON.stringify(join(DIST_SRC, 'rpc/ttrpc/server.js'))};
      const sockets = await KeptTaskSockets.open(${JSON.stringify(keeperPath)}, [${JSON.stringify(runcDir)}], pino({ level: 'silent' }));
      const server = new TtrpcServer({ resumable: (s, m) => m === 'Wait', ...sockets.hooks(${JSON.stringify(socketPath)}) });
      const echo = async ({ payload }) => Buffer.from('first:' + Buffer.from(payload));
      server.register(${JSON.stringify(SERVICE)}, { unary: { Echo: echo, Wait: () => new Promise(() => {}), Hang: () => new Promise(() => {}) } });
      await sockets.serve(server, ${JSON.stringify(socketPath)});
      process.stdout.write('serving\\n');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'], cwd: DIST_SRC });
    await once(child.stdout, 'data');
    const client = await TtrpcClient.connect(socketPath, { timeoutMs: 5_000 });
    cleanups.push(() => client.close());
    assert.equal(text(await client.call(SERVICE, 'Echo', bytes('before'))), 'first:before');
    const waiting = client.call(SERVICE, 'Wait', bytes('pending'));
    const hanging = client.call(SERVICE, 'Hang', bytes('in flight'));
    hanging.catch(() => undefined); // asserted by the test that wants it
    await sleep(50);
    child.kill('SIGKILL');
    await once(child, 'exit');
    return { client, waiting, hanging };
  }

  it('serves the same listener and connections in the next run, answering the calls the first left; Shutdown closes them and empties the keeper', async () => {
    const { client, waiting, hanging } = await crashedRun();
    const names = await keptNames(keeperPath);
    assert.equal(names.length, 4);
    assert.match(names[0]!, new RegExp(`^call ${socketPath} 1 3 [A-Za-z0-9+/]+=*$`), 'the pending Wait (stream 3) is kept');
    assert.deepEqual(
      names.slice(1),
      [`conn ${socketPath} 1`, `inflight ${socketPath} 1 5`, `listen ${socketPath}`],
      'the Hang (stream 5) is kept by its id',
    );
    // While nobody serves, a new connect still completes (the keeper holds the listener).
    const early = await TtrpcClient.connect(socketPath, { timeoutMs: 5_000 });
    cleanups.push(() => early.close());
    const earlyAnswer = early.call(SERVICE, 'Echo', bytes('queued'));

    const sockets = await openSockets();
    const server = echoServer('second', sockets, socketPath);
    await sockets.serve(server, socketPath);
    assert.equal(text(await waiting), 'second:pending', 'the Wait the first run never answered is answered now');
    await assert.rejects(
      hanging,
      { code: Code.Unavailable, message: /whether it took effect is unknown/ },
      'the call that cannot run again is answered at once',
    );
    assert.equal(text(await client.call(SERVICE, 'Echo', bytes('after'))), 'second:after', 'the old connection goes on');
    assert.equal(text(await earlyAnswer), 'second:queued', 'the queued connect is served');
    await sleep(20);
    assert.deepEqual(await keptNames(keeperPath), [`conn ${socketPath} 1`, `conn ${socketPath} 2`, `listen ${socketPath}`]);

    await sockets.close(server, socketPath);
    assert.equal(await connectionLost(client), true, 'Shutdown closes the connection for the client');
    assert.equal(await connectionLost(early), true);
    await sleep(20);
    assert.deepEqual(await keptNames(keeperPath), []);
    assert.equal(existsSync(socketPath), false);
  });

  it('drops a connection from the keeper when the client hangs up', async () => {
    const sockets = await openSockets();
    const server = echoServer('only', sockets, socketPath);
    cleanups.push(() => sockets.close(server, socketPath));
    await sockets.serve(server, socketPath);
    const client = await TtrpcClient.connect(socketPath, { timeoutMs: 5_000 });
    assert.equal(text(await client.call(SERVICE, 'Echo', bytes('x'))), 'only:x');
    // The answered call's note is dropped without waiting for the keeper (fd-keeper.ts): a listing
    // by another client may come before the keeper has read that drop.
    await waitForNames(2);
    assert.equal((await keptNames(keeperPath)).length, 2);
    client.close();
    await sleep(50);
    assert.deepEqual(await keptNames(keeperPath), [`listen ${socketPath}`]);
  });

  it('at a hand-over, leaves endpoints open and the keeper holding everything', async () => {
    const sockets = await openSockets();
    const server = echoServer('leaving', sockets, socketPath);
    await sockets.serve(server, socketPath);
    const client = await TtrpcClient.connect(socketPath, { timeoutMs: 5_000 });
    cleanups.push(() => client.close());
    await client.call(SERVICE, 'Echo', bytes('x'));
    sockets.handOver();
    await sockets.close(server, socketPath);
    assert.equal(text(await client.call(SERVICE, 'Echo', bytes('y'))), 'leaving:y', 'the endpoint was left open');
    await waitForNames(2); // the answered call's note goes without waiting (see above)
    assert.equal((await keptNames(keeperPath)).length, 2);
    assert.equal(existsSync(socketPath), true, 'the socket file stays for the next run');
    cleanups.push(() => server.close());
  });

  it('replaces a keeper killed while it serves, and gives the new one everything held, pending calls included', async () => {
    const { client } = await serveBlockingWaits();
    void client.call(SERVICE, 'Wait', bytes('pending')).catch(() => undefined);
    await waitForNames(3);
    const held = await keptNames(keeperPath);
    const [first] = keeperPids();
    process.kill(first!, 'SIGKILL');

    const deadline = Date.now() + 10_000;
    while (!(keeperPids().length === 1 && keeperPids()[0] !== first) && Date.now() < deadline) await sleep(50);
    assert.equal(keeperPids().length, 1, 'a new keeper runs');
    assert.notEqual(keeperPids()[0], first);
    await waitForNames(3);
    assert.deepEqual(await keptNames(keeperPath), held, 'it holds the listener, the connection and the pending Wait');
    assert.equal(text(await client.call(SERVICE, 'Echo', bytes('x'))), 'blocking:x', 'the connection was never touched');
  });

  it(`keeps at most ${MAX_KEPT_CALLS_PER_CONNECTION} pending calls of one connection; the calls past the bound are served all the same`, async () => {
    const { server, client } = await serveBlockingWaits();
    const calls = MAX_KEPT_CALLS_PER_CONNECTION + 50;
    for (let i = 0; i < calls; i++) void client.call(SERVICE, 'Wait', bytes(`w${i}`)).catch(() => undefined);
    for (const deadline = Date.now() + 10_000; server.pendingWaits < calls && Date.now() < deadline; ) await sleep(20);
    assert.equal(server.pendingWaits, calls, 'every call reached its handler');
    const names = await keptNames(keeperPath);
    assert.equal(names.filter((n) => n.startsWith('call ')).length, MAX_KEPT_CALLS_PER_CONNECTION);
    assert.equal(names.length, 2 + MAX_KEPT_CALLS_PER_CONNECTION, 'besides the listener and the connection');
  });

  /** A blocking-Wait server on the task socket, with its keeper, and a client connected to it. */
  async function serveBlockingWaits(): Promise<{ server: TtrpcServer & { pendingWaits: number }; client: TtrpcClient }> {
    const sockets = await openSockets();
    const server = blockingWaitServer(sockets);
    cleanups.push(() => server.close());
    await sockets.serve(server, socketPath);
    const client = await TtrpcClient.connect(socketPath, { timeoutMs: 5_000 });
    cleanups.push(() => client.close());
    return { server, client };
  }

  /** A server whose Wait answers only when its connection closes; Echo answers `blocking:<payload>`. */
  function blockingWaitServer(sockets: KeptTaskSockets): TtrpcServer & { pendingWaits: number } {
    const server = Object.assign(new TtrpcServer({ resumable: isWait, longCalls: isWait, ...sockets.hooks(socketPath) }), {
      pendingWaits: 0,
    });
    const wait = ({ signal }: { signal: AbortSignal }) => {
      server.pendingWaits++;
      return new Promise<Uint8Array>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
    };
    server.register(SERVICE, { unary: { Echo: async ({ payload }) => bytes(`blocking:${text(payload)}`), Wait: wait } });
    return server;
  }

  const keeperPids = (): number[] => fdKeeperPids(keeperPath);

  /** Waits until the keeper holds `count` names (a hang guard of 10 s). */
  async function waitForNames(count: number): Promise<void> {
    const deadline = Date.now() + 10_000;
    while ((await keptNames(keeperPath).catch(() => [])).length !== count && Date.now() < deadline) await sleep(50);
  }

  /** A FIFO and containerd's end of it: a reader that collects what arrives and tells its end-of-file. */
  async function fifoWithReader(name: string) {
    const path = join(dir, name);
    execFileSync('mkfifo', [path]);
    cleanups.push(() => rm(path, { force: true }));
    const reader = new net.Socket({ fd: openSync(path, constants.O_RDONLY | constants.O_NONBLOCK), readable: true, writable: false });
    cleanups.push(() => void reader.destroy());
    let text = '';
    reader.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const ended = once(reader, 'end').then(() => true);
    return { path, text: () => text, ended };
  }

  /** A first "run" in a child process that keeps its end of `fifo` under `name` and writes `line` there, killed with SIGKILL. */
  async function crashedRunKeeping(fifo: string, name: string, line: string): Promise<void> {
    const script = `
      import { openSync, writeSync } from 'node:fs';
      import { pino } from 'pino';
      import { KeptTaskSockets } from ${JSON.stringify(join(DIST_SRC, 'daemon/kept-task-sockets.js'))};
      const sockets = await KeptTaskSockets.open(${JSON.stringify(keeperPath)}, [${JSON.stringify(runcDir)}], pino({ level: 'silent' }));
      const fd = openSync(${JSON.stringify(fifo)}, 'r+');
      sockets.descriptors(${JSON.stringify(runcDir)}).keep(${JSON.stringify(name)}, fd);
      writeSync(fd, ${JSON.stringify(line)});
      process.stdout.write('kept\\n');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'], cwd: DIST_SRC });
    await once(child.stdout, 'data');
    child.kill('SIGKILL');
    await once(child, 'exit');
  }

  it("keeps a kind's descriptor through a crash (containerd's reader sees no end); the next run keeps its own under the name, then releases it", async () => {
    const fifo = await fifoWithReader('stdout-fifo');
    await crashedRunKeeping(fifo.path, 'sb1/c1 stdout', 'before\n');
    assert.deepEqual(await keptNames(keeperPath), [`fd ${runcDir}/sb1/c1 stdout`]);
    assert.equal(
      await Promise.race([fifo.ended, sleep(300).then(() => false)]),
      false,
      'the reader sees no end-of-file while the keeper holds the FIFO',
    );

    const sockets = await openSockets();
    const kept = sockets.descriptors(runcDir);
    const fd = openSync(fifo.path, constants.O_RDWR);
    kept.keep('sb1/c1 stdout', fd);
    writeSync(fd, 'after\n');
    sockets.releaseUnclaimed();
    assert.deepEqual(
      await keptNames(keeperPath),
      [`fd ${runcDir}/sb1/c1 stdout`],
      'the one kept again replaced the earlier copy and is not released as unclaimed',
    );
    kept.release('sb1/c1 stdout');
    assert.deepEqual(await keptNames(keeperPath), []);
    closeSync(fd);
    assert.equal(await fifo.ended, true, 'once released and closed, the reader sees end-of-file');
    assert.equal(fifo.text(), 'before\nafter\n');
  });

  it('releases a kept descriptor that no kind keeps again', async () => {
    const fifo = await fifoWithReader('gone-fifo');
    await crashedRunKeeping(fifo.path, 'sb1/gone stdout', 'last words\n');
    const sockets = await openSockets();
    sockets.releaseUnclaimed();
    assert.deepEqual(await keptNames(keeperPath), []);
    assert.equal(await fifo.ended, true);
    assert.equal(fifo.text(), 'last words\n');
  });

  it('releases what no sandbox claimed below its own directories, and leaves the rest to its owners', async () => {
    const keep = await FdKeeper.open({ socketPath: keeperPath });
    cleanups.push(() => keep.keeper.close());
    const peerPath = join(dir, 'peer.sock');
    const peerServer = net.createServer().listen(peerPath);
    cleanups.push(() => void peerServer.close());
    const socket = net.createConnection(peerPath);
    cleanups.push(() => void socket.destroy());
    await once(socket, 'connect');
    const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
    const gone = join(runcDir, 'gone', 'task.sock');
    const other = join(dir, 'wasm', 'sb', 'task.sock');
    for (const name of [`listen ${gone}`, `conn ${gone} 7`, `listen ${other}`, 'not ours']) keep.keeper.put(name, fd);

    const sockets = await openSockets();
    sockets.releaseUnclaimed();
    assert.deepEqual(await keptNames(keeperPath), [`listen ${other}`, 'not ours']);
    for (const name of [`listen ${other}`, 'not ours']) keep.keeper.drop(name);
  });
});
