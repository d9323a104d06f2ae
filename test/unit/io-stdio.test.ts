// Process stdio without a container runtime: stdio strings, FIFO opening semantics, the console
// socket receiving a descriptor, and pipes bridged to streams (streaming io). No root needed.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, constants, openSync, readdirSync, readFileSync, readSync, writeSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Code, failedPrecondition, RuntimeError } from '../../src/base/errors.js';
import { ConsoleSocket } from '../../src/io/console-socket.js';
import { parseStdioEndpoint, StdioEndpoints } from '../../src/io/endpoints.js';
import { openStdinFifo } from '../../src/io/fifo.js';
import { ProcessStdio } from '../../src/io/process-stdio.js';
import { pipe } from '../../src/linux/libc/files.js';

const log = pino({ level: 'silent' });
const O_ACCMODE = 0o3;

/** The open flags of one of our descriptors, as the kernel reports them (octal in fdinfo). */
function openFlags(fd: number): number {
  const line = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('flags:'));
  return Number.parseInt(line!.split(/\s+/)[1]!, 8);
}

/** A second descriptor for the same pipe end (what the process would hold after fork). */
const reopen = (fd: number, mode: 'r' | 'w') => open(`/proc/self/fd/${fd}`, mode);

describe('stdio strings', () => {
  it('tells FIFO paths, streams and nothing apart', () => {
    assert.deepEqual(parseStdioEndpoint(''), { kind: 'none' });
    assert.deepEqual(parseStdioEndpoint('/run/c/io/1/c-stdout'), { kind: 'fifo', path: '/run/c/io/1/c-stdout' });
    assert.deepEqual(parseStdioEndpoint('ttrpc+unix:///run/kuasar/runc/p/task.sock?streaming_id=c1-stdin'), {
      kind: 'stream',
      id: 'c1-stdin',
    });
  });

  it('refuses relative paths and URLs it cannot serve', () => {
    for (const bad of ['relative/fifo', 'binary:///usr/bin/logger?x=1', 'file:///var/log/c.log', 'ttrpc+unix://[bad']) {
      assert.throws(
        () => parseStdioEndpoint(bad),
        (err: unknown) => err instanceof RuntimeError && err.code === Code.InvalidArgument,
        bad,
      );
    }
  });
});

describe('stdio on the host', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kuasar-stdio-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('opens all endpoints or none: a FIFO that cannot be opened is FailedPrecondition, and the one opened before it is closed', async () => {
    const stdin = join(dir, 'half-in');
    execFileSync('mkfifo', [stdin]);
    const missing = join(dir, 'missing-out');
    const before = openDescriptors();
    for (const use of ['descriptor', 'stream'] as const) {
      await assert.rejects(
        StdioEndpoints.open({
          stdio: { stdin, stdout: missing, stderr: '', terminal: false },
          streams: { take: () => Promise.reject(new Error('no streams here')) },
          fifos: { stdin: use, outputs: use },
          log,
        }),
        (err: unknown) =>
          err instanceof RuntimeError && err.code === Code.FailedPrecondition && err.message.includes(`stdout FIFO ${missing}`),
        use,
      );
      assert.deepEqual(openDescriptors(), before, `nothing left open (${use})`);
    }
  });

  it('releases every stream containerd opened when another fails, one that arrives later included', { timeout: 120_000 }, async () => {
    const early = new PassThrough();
    let arrive: (stream: PassThrough) => void = () => undefined;
    const late = new PassThrough();
    const url = (id: string) => `ttrpc+unix://${dir}/task.sock?streaming_id=${id}`;
    const streams = {
      take: (id: string) => {
        if (id === 'x-stdin') return Promise.resolve(early);
        if (id === 'x-stdout') return new Promise<PassThrough>((resolve) => (arrive = resolve));
        return Promise.reject(failedPrecondition(`stream ${id} was not opened`));
      },
    };
    await assert.rejects(
      StdioEndpoints.open({
        stdio: { stdin: url('x-stdin'), stdout: url('x-stdout'), stderr: url('x-stderr'), terminal: false },
        streams,
        fifos: { stdin: 'descriptor', outputs: 'descriptor' },
        log,
      }),
      /x-stderr was not opened/,
    );
    arrive(late);
    await Promise.all([once(early, 'close'), once(late, 'close')]);

    // A stdout that cannot be written is refused, and the stdin stream taken with it released.
    const stdinStream = new PassThrough();
    await assert.rejects(
      StdioEndpoints.open({
        stdio: { stdin: url('y-stdin'), stdout: url('y-stdout'), stderr: '', terminal: false },
        streams: { take: async (id) => (id === 'y-stdin' ? stdinStream : Readable.from([])) },
        fifos: { stdin: 'descriptor', outputs: 'descriptor' },
        log,
      }),
      (err: unknown) =>
        err instanceof RuntimeError && err.code === Code.FailedPrecondition && /stdout stream cannot be written/.test(err.message),
    );
    assert.equal(stdinStream.destroyed, true);
  });

  it('opens a stdin FIFO read-only and blocking, so that the reader sees end-of-file', () => {
    const path = join(dir, 'stdin');
    execFileSync('mkfifo', [path]);
    // No writer yet: the open must not wait for one.
    const fd = openStdinFifo(path);
    try {
      const flags = openFlags(fd);
      assert.equal(flags & O_ACCMODE, constants.O_RDONLY);
      assert.equal(flags & constants.O_NONBLOCK, 0, 'the process gets a blocking stdin');
      const writer = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
      writeSync(writer, 'abc');
      closeSync(writer);
      const buffer = Buffer.alloc(16);
      assert.equal(buffer.subarray(0, readSync(fd, buffer)).toString(), 'abc');
      assert.equal(readSync(fd, buffer), 0, 'end-of-file once the only writer closed');
    } finally {
      closeSync(fd);
    }
  });

  it('receives a descriptor sent over the console socket (SCM_RIGHTS), then removes the socket', async () => {
    const socket = ConsoleSocket.open(dir);
    const ends = pipe();
    try {
      assert.throws(() => socket.receiveMaster(), /did not connect/);
      sendDescriptor(socket.path, ends.write);
      const received = socket.receiveMaster();
      assert.notEqual(received, ends.write);
      writeSync(received, 'via the passed descriptor');
      closeSync(received);
      closeSync(ends.write);
      const buffer = Buffer.alloc(64);
      assert.equal(buffer.subarray(0, readSync(ends.read, buffer)).toString(), 'via the passed descriptor');
    } finally {
      socket.close();
      closeSync(ends.read);
    }
    assert.throws(() => readFileSync(socket.path), /ENOENT/);
  });

  it("bridges a process's pipes to streams, and ends the process's stdin with the stream", async () => {
    const streams = { 'p-stdin': new PassThrough(), 'p-stdout': new PassThrough(), 'p-stderr': new PassThrough() };
    const url = (id: string) => `ttrpc+unix://${dir}/task.sock?streaming_id=${id}`;
    const stdio = await ProcessStdio.open({
      stdio: { stdin: url('p-stdin'), stdout: url('p-stdout'), stderr: url('p-stderr'), terminal: false },
      streams: { take: async (id) => streams[id as keyof typeof streams] },
      consoleDir: dir,
      log,
    });
    const [stdinFd, stdoutFd, stderrFd] = stdio.runtime.stdio as [number, number, number];
    assert.equal(stdio.runtime.consoleSocket, undefined);
    // What the process holds once the runtime has forked it; the daemon's copies close at start.
    const processStdin = await reopen(stdinFd, 'r');
    const processStdout = await reopen(stdoutFd, 'w');
    const processStderr = await reopen(stderrFd, 'w');
    stdio.started();

    streams['p-stdin'].end('typed input');
    assert.equal((await processStdin.readFile()).toString(), 'typed input', 'read to end-of-file');
    await processStdout.write('to stdout');
    await processStderr.write('to stderr');
    const stdout = collect(streams['p-stdout']);
    const stderr = collect(streams['p-stderr']);
    await Promise.all([processStdin.close(), processStdout.close(), processStderr.close()]);
    await stdio.finish();
    assert.equal(await stdout, 'to stdout');
    assert.equal(await stderr, 'to stderr');
  });

  it('stops reading an output that a child of the process keeps open once it is idle, and delivers what was read', async () => {
    const output = new PassThrough();
    const delivered = collect(output);
    const stdio = await ProcessStdio.open({
      stdio: { stdin: '', stdout: `ttrpc+unix://${dir}/task.sock?streaming_id=q-stdout`, stderr: '', terminal: false },
      streams: { take: async () => output },
      consoleDir: dir,
      log,
    });
    const held = await reopen((stdio.runtime.stdio as number[])[1]!, 'w');
    stdio.started();
    await held.write('written before the exit\n');
    // The process has exited; its child still holds the pipe and writes nothing more. Without
    // the read grace this would wait for the child (and the test would hang).
    await stdio.finish({ readGraceMs: 100, deliverMs: 60_000 });
    assert.equal(await delivered, 'written before the exit\n', 'ended, with everything read');
    assert.equal(output.destroyed, true, 'released all the same');
    await held.close();
  });

  it('delivers all a process wrote to a stream that takes it slower than the read grace, before finishing', async () => {
    const received: Buffer[] = [];
    // containerd at its own pace (its credits): each chunk is taken 50 ms after it was given.
    const output = new Writable({
      highWaterMark: 1024,
      write: (chunk: Buffer, _encoding, done) => {
        setTimeout(() => {
          received.push(chunk);
          done();
        }, 50);
      },
    });
    const stdio = await ProcessStdio.open({
      stdio: { stdin: '', stdout: `ttrpc+unix://${dir}/task.sock?streaming_id=s-stdout`, stderr: '', terminal: false },
      streams: { take: async () => output },
      consoleDir: dir,
      log,
    });
    // The process writes more than a pipe holds and exits once the last of it is in the pipe:
    // what it wrote last is still to be read and passed on after its exit.
    const bytes = 512 * 1024;
    const child = spawn('head', ['-c', String(bytes), '/dev/zero'], { stdio: ['ignore', stdio.runtime.stdio[1] as number, 'ignore'] });
    stdio.started();
    await once(child, 'exit');
    await stdio.finish({ readGraceMs: 20, deliverMs: 600_000 });
    assert.equal(Buffer.concat(received).length, bytes, 'every byte, although reading waited on the stream for longer than the read grace');
    assert.equal(output.writableFinished, true);
  });

  it("delivers what a terminal's process wrote just before it exited, when the master reads EIO", async () => {
    for (let round = 0; round < 20; round++) {
      const output = new PassThrough();
      const delivered = collect(output);
      const stdio = await ProcessStdio.open({
        stdio: { stdin: '', stdout: `ttrpc+unix://${dir}/task.sock?streaming_id=e-stdout`, stderr: '', terminal: true },
        streams: { take: async () => output },
        consoleDir: dir,
        log,
      });
      const pty = openPty();
      sendDescriptor(stdio.runtime.consoleSocket!, pty.master);
      closeSync(pty.master);
      stdio.started();
      // The process's last words and its exit: the last holder of the pty's other side closes it.
      const slave = openSync(pty.slavePath, constants.O_RDWR | constants.O_NOCTTY);
      writeSync(slave, `last words ${round}\n`);
      closeSync(slave);
      await stdio.finish({ readGraceMs: 60_000, deliverMs: 60_000 });
      assert.equal(await delivered, `last words ${round}\r\n`);
    }
  });

  it("copies between a terminal and the process's streams, resizes it, and ends its input with EOT", async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    let copied = '';
    output.on('data', (chunk: Buffer) => (copied += chunk.toString()));
    const url = (id: string) => `ttrpc+unix://${dir}/task.sock?streaming_id=${id}`;
    const stdio = await ProcessStdio.open({
      stdio: { stdin: url('t-stdin'), stdout: url('t-stdout'), stderr: '', terminal: true },
      streams: { take: async (id) => (id === 't-stdin' ? input : output) },
      consoleDir: dir,
      log,
    });
    assert.deepEqual(stdio.runtime.stdio, ['ignore', 'ignore', 'ignore']);
    // The runtime's part: a pty whose master goes over the console socket.
    const pty = openPty();
    sendDescriptor(stdio.runtime.consoleSocket!, pty.master);
    closeSync(pty.master);
    stdio.started();
    const slave = await open(pty.slavePath, constants.O_RDWR | constants.O_NOCTTY);

    await slave.write('from the process\n');
    await until(() => copied.includes('from the process\r\n'));
    input.write('typed\n');
    const buffer = Buffer.alloc(64);
    const { bytesRead } = await slave.read(buffer, 0, 64);
    assert.equal(buffer.subarray(0, bytesRead).toString(), 'typed\n');

    stdio.resize({ width: 100, height: 40 });
    assert.equal(execFileSync('stty', ['-F', pty.slavePath, 'size']).toString().trim(), '40 100');

    stdio.closeStdin();
    assert.equal((await slave.read(buffer, 0, 64)).bytesRead, 0, 'end-of-file for a reader in canonical mode');
    assert.equal(input.destroyed, true);

    // The process is gone: the master reads end-of-file, the output ends, everything is released
    // (without waiting out the read grace: the test would time out).
    await slave.close();
    await stdio.finish({ readGraceMs: 600_000, deliverMs: 600_000 });
    assert.equal(output.writableFinished, true);
  });

  it("copies a stdin FIFO into a pipe of its own with copyStdin, which abortStdin ends while the FIFO's writer stays", async () => {
    const path = join(dir, 'copied-in');
    execFileSync('mkfifo', [path]);
    const writer = openSync(path, constants.O_RDWR); // containerd's writer, open all along
    const stdio = await ProcessStdio.open({
      stdio: { stdin: path, stdout: '', stderr: '', terminal: false },
      streams: { take: () => Promise.reject(new Error('no streams here')) },
      consoleDir: dir,
      log,
      copyStdin: true,
    });
    const processEnd = await reopen(stdio.runtime.stdio[0] as number, 'r');
    stdio.started();
    writeSync(writer, 'typed\n');
    const buffer = Buffer.alloc(64);
    const first = await processEnd.read(buffer, 0, 64);
    assert.equal(buffer.subarray(0, first.bytesRead).toString(), 'typed\n', 'the process reads a pipe the daemon fills');
    stdio.abortStdin();
    assert.equal((await processEnd.read(buffer, 0, 64)).bytesRead, 0, "end-of-file at once, the FIFO's writer still open");
    await processEnd.close();
    closeSync(writer);
    stdio.close();
  });

  it('hands FIFO paths to the process itself: stdin read-only, outputs read-write', async () => {
    const paths = ['in', 'out', 'err'].map((name) => join(dir, `direct-${name}`));
    for (const path of paths) execFileSync('mkfifo', [path]);
    const stdio = await ProcessStdio.open({
      stdio: { stdin: paths[0]!, stdout: paths[1]!, stderr: paths[2]!, terminal: false },
      streams: { take: () => Promise.reject(new Error('no streams here')) },
      consoleDir: dir,
      log,
    });
    const fds = stdio.runtime.stdio as number[];
    assert.deepEqual(
      fds.map((fd) => openFlags(fd) & (O_ACCMODE | constants.O_NONBLOCK)),
      [constants.O_RDONLY, constants.O_RDWR, constants.O_RDWR],
    );
    stdio.started();
    assert.throws(() => openFlags(fds[0]!), /ENOENT/, 'the daemon keeps no copy once the process has its own');
    stdio.close();
  });
});

/** The descriptors this process has open now. */
function openDescriptors(): string[] {
  return readdirSync('/proc/self/fd').sort();
}

/** Everything written to `stream` until it ends. */
function collect(stream: PassThrough): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    stream.on('data', (chunk: Buffer) => (text += chunk.toString()));
    stream.on('end', () => resolve(text));
  });
}

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    assert.ok(Date.now() < deadline, 'condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A new pty, as the runtime makes one: its master descriptor and the path of its other side. */
function openPty(): { master: number; slavePath: string } {
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  const lib = koffi.load('libc.so.6');
  const master = lib.func('int posix_openpt(int)')(constants.O_RDWR | constants.O_NOCTTY) as number;
  assert.ok(master >= 0);
  assert.equal(lib.func('int grantpt(int)')(master), 0);
  assert.equal(lib.func('int unlockpt(int)')(master), 0);
  return { master, slavePath: lib.func('const char *ptsname(int)')(master) as string };
}

/** The runtime's side: connect to the console socket and send `fd` with one byte of data. */
function sendDescriptor(path: string, fd: number): void {
  const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
  const lib = koffi.load('libc.so.6');
  const socket = lib.func('int socket(int, int, int)');
  const connect = lib.func('int connect(int, const void *, uint32_t)');
  const sendmsg = lib.func('long sendmsg(int, const void *, int)');
  const close = lib.func('int close(int)');
  const address = Buffer.alloc(110);
  address.writeUInt16LE(1, 0);
  address.write(path, 2);
  const sock = socket(1, 1, 0);
  assert.equal(connect(sock, address, address.length), 0);
  const data = Buffer.from('/dev/pts/9');
  const iov = Buffer.alloc(16);
  const control = Buffer.alloc(24);
  control.writeBigUInt64LE(20n, 0);
  control.writeInt32LE(1, 8); // SOL_SOCKET
  control.writeInt32LE(1, 12); // SCM_RIGHTS
  control.writeInt32LE(fd, 16);
  const header = Buffer.alloc(56);
  iov.writeBigUInt64LE(BigInt(koffi.address(data)), 0);
  iov.writeBigUInt64LE(BigInt(data.length), 8);
  header.writeBigUInt64LE(BigInt(koffi.address(iov)), 16);
  header.writeBigUInt64LE(1n, 24);
  header.writeBigUInt64LE(BigInt(koffi.address(control)), 32);
  header.writeBigUInt64LE(BigInt(control.length), 40);
  assert.equal(Number(sendmsg(sock, header, 0)), data.length);
  close(sock);
}
