// The fd keeper (native/fd-keeper.c, built by `npm run build:native`) and its client: sockets
// kept there stay open when the process that kept them is killed, a later client gets them
// back, and the keeper goes away once it holds nothing and nobody is connected.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, describe, it } from 'node:test';
import { listProcesses } from '../../src/devenv/processes.js';
import { readProcStat } from '../../src/linux/proc.js';
import { closeKept, FD_KEEPER_BINARY, FdKeeper, type KeptFd } from '../../src/linux/fd-keeper.js';

const FD_KEEPER_MODULE = resolve(dirname(fileURLToPath(import.meta.url)), '../../src/linux/fd-keeper.js');

/** A server whose accepted sockets are the "peers" of what gets kept. */
class PeerServer {
  readonly peers: net.Socket[] = [];
  private readonly server = net.createServer((socket) => this.peers.push(socket));

  constructor(readonly path: string) {}

  async start(): Promise<void> {
    this.server.listen(this.path);
    await once(this.server, 'listening');
  }

  async nextPeer(count: number): Promise<net.Socket> {
    while (this.peers.length < count) await sleep(10);
    return this.peers[count - 1]!;
  }

  close(): void {
    for (const peer of this.peers) peer.destroy();
    this.server.close();
  }
}

/** Resolves true if `socket` sees EOF (or closes) within `ms`. */
async function seesEof(socket: net.Socket, ms: number): Promise<boolean> {
  if (socket.readableEnded || socket.destroyed) return true;
  const ended = new Promise<boolean>((resolveEnd) => {
    socket.once('end', () => resolveEnd(true));
    socket.once('close', () => resolveEnd(true));
  });
  return Promise.race([ended, sleep(ms).then(() => false)]);
}

function keeperProcesses(socketPath: string): number[] {
  return listProcesses()
    .filter((p) => p.state !== 'Z' && p.cmdline.includes(FD_KEEPER_BINARY) && p.cmdline.includes(socketPath))
    .map((p) => p.pid);
}

async function waitUntil(what: string, condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

describe('fd keeper', () => {
  let dir: string;
  let socketPath: string;
  let peers: PeerServer;
  const open: FdKeeper[] = [];

  const connect = async (): Promise<{ keeper: FdKeeper; kept: KeptFd[] }> => {
    const opened = await FdKeeper.open({ socketPath });
    open.push(opened.keeper);
    return opened;
  };

  before(async () => {
    assert.ok(existsSync(FD_KEEPER_BINARY), `${FD_KEEPER_BINARY} is missing: run npm run build:native`);
    dir = await mkdtemp(join(tmpdir(), 'fd-keeper-'));
    socketPath = join(dir, 'keeper.sock');
    peers = new PeerServer(join(dir, 'peers.sock'));
    await peers.start();
  });

  afterEach(async () => {
    for (const keeper of open.splice(0)) keeper.close();
    for (const pid of keeperProcesses(socketPath)) process.kill(pid, 'SIGKILL');
    await waitUntil('the keeper is gone', () => keeperProcesses(socketPath).length === 0);
  });

  after(async () => {
    peers.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps a socket open through the death of the process that kept it, and hands it to the next client', async () => {
    // A child process connects to the peer server and keeps its end in the keeper, then dies.
    const script = `
      import net from 'node:net';
      import { FdKeeper } from ${JSON.stringify(FD_KEEPER_MODULE)};
      const socket = net.createConnection(${JSON.stringify(peers.path)});
      socket.once('connect', async () => {
        const { keeper } = await FdKeeper.open({ socketPath: ${JSON.stringify(socketPath)} });
        keeper.put('conn one', socket._handle.fd);
        process.stdout.write('kept\\n');
      });
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [firstLine] = (await once(child.stdout, 'data')) as [Buffer];
    assert.equal(firstLine.toString().trim(), 'kept');
    const peer = await peers.nextPeer(1);
    assert.deepEqual(keeperProcesses(socketPath).length, 1, 'the child started one keeper');
    assert.equal(statSync(socketPath).mode & 0o777, 0o600, 'the control socket is 0600');

    child.kill('SIGKILL');
    await once(child, 'exit');
    assert.equal(await seesEof(peer, 300), false, 'the peer sees no EOF: the keeper holds the socket');

    const { keeper, kept } = await connect();
    assert.deepEqual(
      kept.map((k) => k.name),
      ['conn one'],
    );
    const adopted = new net.Socket({ fd: kept[0]!.fd, readable: true, writable: true });
    adopted.write('still here');
    const [data] = (await once(peer, 'data')) as [Buffer];
    assert.equal(data.toString(), 'still here', 'the kept descriptor is the same connection');

    adopted.destroy();
    assert.equal(await seesEof(peer, 200), false, "closing our duplicate leaves the keeper's copy");
    keeper.drop('conn one');
    assert.equal(await seesEof(peer, 2_000), true, 'the peer sees EOF once the keeper drops its copy');
    assert.deepEqual(keeper.list(), []);
  });

  it('exits by itself, removing its socket, once it holds nothing and its last client is gone', async () => {
    const { keeper } = await connect();
    const socket = net.createConnection(peers.path);
    await once(socket, 'connect');
    keeper.put('held', (socket as unknown as { _handle: { fd: number } })._handle.fd);
    keeper.close();
    await sleep(200);
    assert.equal(keeperProcesses(socketPath).length, 1, 'a keeper holding something stays without clients');

    const again = await connect();
    assert.deepEqual(
      again.kept.map((k) => k.name),
      ['held'],
    );
    closeKept(again.kept);
    again.keeper.drop('held');
    assert.equal(keeperProcesses(socketPath).length, 1, 'a keeper with a client stays while it holds nothing');
    again.keeper.close();
    await waitUntil('the keeper exits', () => keeperProcesses(socketPath).length === 0);
    assert.equal(existsSync(socketPath), false, 'it removed its socket');
    socket.destroy();
  });

  it('answers errors for a name in use, an unknown name, and an invalid name, and keeps serving', async () => {
    const { keeper } = await connect();
    const socket = net.createConnection(peers.path);
    await once(socket, 'connect');
    const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
    keeper.put('a name with spaces', fd);
    assert.throws(() => keeper.put('a name with spaces', fd), { name: 'FdKeeperError', message: /name in use/ });
    assert.throws(() => keeper.drop('never kept'), { name: 'FdKeeperError', message: /no such name/ });
    assert.throws(() => keeper.put('two\nlines', fd), { name: 'FdKeeperError', message: /invalid fd keeper name/ });
    assert.throws(() => keeper.put('x'.repeat(4001), fd), { name: 'FdKeeperError', message: /invalid fd keeper name/ });
    assert.equal(keeper.connected, true, 'an error answer leaves the connection usable');
    const kept = keeper.list();
    assert.deepEqual(
      kept.map((k) => k.name),
      ['a name with spaces'],
    );
    closeKept(kept);
    keeper.drop('a name with spaces');
    socket.destroy();
  });

  it('serves several clients at once, and a second keeper for the same directory stands down', async () => {
    const first = await connect();
    const second = await connect();
    const socket = net.createConnection(peers.path);
    await once(socket, 'connect');
    first.keeper.put('from first', (socket as unknown as { _handle: { fd: number } })._handle.fd);
    const seen = second.keeper.list();
    assert.deepEqual(
      seen.map((k) => k.name),
      ['from first'],
    );
    closeKept(seen);

    const rival = spawn(FD_KEEPER_BINARY, [socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
    const [output] = (await once(rival.stdout, 'data')) as [Buffer];
    assert.equal(output.toString().trim(), 'running');
    assert.deepEqual(await once(rival, 'exit'), [0, null]);
    assert.equal(keeperProcesses(socketPath).length, 1);
    second.keeper.drop('from first');
    socket.destroy();
  });

  it('holds no descriptor its starter let through besides stdio', async () => {
    // fd 3 of the keeper is one end of a pipe whose other end the test reads until EOF.
    const keeper = spawn(FD_KEEPER_BINARY, [socketPath], { stdio: ['ignore', 'pipe', 'inherit', 'pipe'] });
    const inherited = keeper.stdio[3] as net.Socket;
    inherited.resume();
    const [output] = (await once(keeper.stdout!, 'data')) as [Buffer];
    assert.equal(output.toString().trim(), 'ready');
    assert.equal(await seesEof(inherited, 2_000), true, 'the keeper closed the descriptor it inherited');
    assert.equal(keeperProcesses(socketPath).length, 1, 'and runs on');
  });

  it('keeps names without a descriptor (notes), any number of them, and exits when it holds only notes', async () => {
    // More notes than this process may open descriptors: a listing must not cost one per note.
    const count = 25_000;
    const { keeper } = await connect();
    for (let i = 0; i < count; i++) keeper.put(`call /sb/task.sock 1 ${2 * i + 1} AAAA`);
    const again = await connect();
    assert.equal(again.kept.length, count);
    assert.ok(
      again.kept.every((k) => k.fd === undefined && k.name.startsWith('call ')),
      'notes come back as names alone',
    );
    keeper.close();
    again.keeper.close();
    await waitUntil('the keeper exits', () => keeperProcesses(socketPath).length === 0);
    assert.equal(existsSync(socketPath), false);
  });

  it('carries out every note a client sent without reading the replies, in order, though the client dies first', async () => {
    // This process stays connected, so that a keeper holding only notes does not exit.
    const { keeper } = await connect();
    const [keeperPid] = keeperProcesses(socketPath);
    // The child connects, then sends its notes while the keeper is stopped, and dies: they are
    // all still queued when it goes (fewer than the client reads replies after).
    const script = `
      import { FdKeeper } from ${JSON.stringify(FD_KEEPER_MODULE)};
      const { keeper } = await FdKeeper.open({ socketPath: ${JSON.stringify(socketPath)} });
      process.stdout.write('connected\\n');
      process.stdin.once('data', () => {
        for (let i = 0; i < 40; i++) keeper.putNote('call /sb/task.sock 1 ' + i + ' AAAA');
        for (let i = 0; i < 40; i += 2) keeper.dropNote('call /sb/task.sock 1 ' + i + ' AAAA');
        process.kill(process.pid, 'SIGKILL');
      });
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    const exited = once(child, 'exit');
    await once(child.stdout, 'data');
    process.kill(keeperPid!, 'SIGSTOP');
    try {
      child.stdin.write('go\n');
      assert.deepEqual(await exited, [null, 'SIGKILL']);
    } finally {
      process.kill(keeperPid!, 'SIGCONT');
    }
    const expected = Array.from({ length: 20 }, (_, i) => `call /sb/task.sock 1 ${2 * i + 1} AAAA`).sort();
    assert.deepEqual(
      keeper
        .list()
        .map((k) => k.name)
        .sort(),
      expected,
    );
  });

  it("tells a note's failure once its reply is read, and keeps the connection", async () => {
    const { keeper } = await connect();
    const failures: Error[] = [];
    keeper.onLateFailure = (err) => void failures.push(err);
    keeper.putNote('note a');
    keeper.putNote('note a');
    await waitUntil('the failure is told', () => failures.length > 0);
    assert.equal(failures.length, 1);
    assert.match(failures[0]!.message, /PUT note a: name in use/);
    assert.equal(keeper.connected, true);
    keeper.dropNote('note a');
    assert.deepEqual(keeper.list(), [], 'the drop sent before the listing was carried out first');
  });

  it('exchanges notes through a flood of signals: a read or write interrupted (EINTR) is made again, not reported', async () => {
    // Notes go by plain write/read (node:fs): libuv does not retry an interrupted read, and a
    // socket with a receive timeout reports EINTR even under SA_RESTART. kuasard gets a SIGCHLD
    // per child that ends. The child sends a bounded number of signals (see linux-libc.test.ts).
    const { keeper } = await connect();
    const onSignal = (): void => undefined;
    process.on('SIGUSR2', onSignal);
    const child = spawn('sh', ['-c', `i=0; while [ $i -lt 3000 ]; do kill -USR2 ${process.pid}; i=$((i+1)); done`], { stdio: 'ignore' });
    const exited = once(child, 'exit');
    try {
      let exchanges = 0;
      // Until the child has sent them all (it is a zombie then); the count is a hang guard.
      while (readProcStat(child.pid!)?.state !== 'Z' && exchanges < 1_000_000) {
        keeper.put(`inflight /sb/task.sock 1 ${exchanges}`);
        keeper.drop(`inflight /sb/task.sock 1 ${exchanges}`);
        exchanges++;
      }
      assert.deepEqual(await exited, [0, null], 'the child sent every signal');
      assert.equal(keeper.connected, true, 'no exchange failed');
      assert.deepEqual(keeper.list(), [], 'every note put was dropped again');
    } finally {
      child.kill('SIGKILL');
      process.off('SIGUSR2', onSignal);
    }
  });

  it('reports a descriptor the kernel dropped for want of room (RLIMIT_NOFILE) as such', async () => {
    const { keeper } = await connect();
    const socket = net.createConnection(peers.path);
    await once(socket, 'connect');
    for (let i = 0; i < 100; i++) keeper.put(`conn ${i}`, (socket as unknown as { _handle: { fd: number } })._handle.fd);
    // A client allowed 64 descriptors lists the 100 the keeper holds.
    const script = `
      import { FdKeeper } from ${JSON.stringify(FD_KEEPER_MODULE)};
      try { await FdKeeper.open({ socketPath: ${JSON.stringify(socketPath)} }); console.log('listed'); }
      catch (err) { console.log(err.message); }
    `;
    const child = spawn('prlimit', ['--nofile=64', process.execPath, '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await once(child, 'exit');
    assert.match(output, /a passed descriptor was dropped: this process is out of descriptors \(RLIMIT_NOFILE\)/);
    assert.equal(keeper.list().length, 100, 'the keeper serves on');
    socket.destroy();
  });

  it('while nobody is connected, closes what can serve nobody and exits once nothing is left', async () => {
    const earlierPeers = peers.peers.length;
    const hungUp = net.createConnection(peers.path);
    const live = net.createConnection(peers.path);
    await Promise.all([once(hungUp, 'connect'), once(live, 'connect')]);
    const listenerPath = join(dir, 'orphan.sock');
    const listener = net.createServer().listen(listenerPath);
    await once(listener, 'listening');
    const fdOf = (handle: object): number => (handle as { _handle: { fd: number } })._handle.fd;
    const { keeper } = await connect();
    keeper.put('hung up', fdOf(hungUp));
    keeper.put('live', fdOf(live));
    keeper.put('orphaned listener', fdOf(listener));
    keeper.put('a note');
    // Our copies go (closing the server removes its socket file too); the keeper's stay.
    hungUp.destroy();
    live.destroy();
    listener.close();
    keeper.close();
    // Accepted in the order they connected.
    const [hungUpPeer, livePeer] = [await peers.nextPeer(earlierPeers + 1), await peers.nextPeer(earlierPeers + 2)];
    assert.equal(await seesEof(livePeer, 300), false, 'kept while nobody is connected');

    hungUpPeer.destroy();
    await rm(listenerPath, { force: true });
    const names = async (): Promise<string[]> => {
      const { keeper: lister, kept } = await FdKeeper.open({ socketPath });
      lister.close();
      closeKept(kept);
      return kept.map((k) => k.name).sort();
    };
    // Listing connects a client, and the keeper prunes only without clients: ask until it did.
    let left = await names();
    for (const deadline = Date.now() + 10_000; left.length > 2 && Date.now() < deadline; ) {
      await sleep(100);
      left = await names();
    }
    assert.deepEqual(left, ['a note', 'live']);

    livePeer.destroy();
    await waitUntil('the keeper exits', () => keeperProcesses(socketPath).length === 0, 10_000);
    assert.equal(existsSync(socketPath), false, 'it removed its socket');
  });

  it('replaces the socket of a keeper that was killed', async () => {
    await connect();
    const [pid] = keeperProcesses(socketPath);
    process.kill(pid!, 'SIGKILL');
    await waitUntil('the keeper is gone', () => keeperProcesses(socketPath).length === 0);
    assert.equal(existsSync(socketPath), true, 'a killed keeper leaves its socket file');
    for (const keeper of open.splice(0)) keeper.close();

    const { keeper, kept } = await connect();
    assert.deepEqual(kept, []);
    assert.equal(keeper.connected, true);
    assert.equal(keeperProcesses(socketPath).length, 1);
  });
});
