// Forwarding a process's stdio over a byte channel (the process runs elsewhere, as in a guest):
// containerd's endpoints are real FIFOs or streams, the channel is real pipes, and the test plays
// the far side where the process runs. No root needed.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { after, afterEach, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { Code, RuntimeError } from '../../src/base/errors.js';
import type { WindowSize } from '../../src/base/model.js';
import { ForwardedStdio, type ForwardedStdioOptions, type StdioChannel } from '../../src/io/forwarded-stdio.js';
import { pipe } from '../../src/linux/libc/files.js';

const log = pino({ level: 'silent' });
/** Only against hangs: every test here ends as soon as its streams do. */
const HANG_GUARD = { timeout: 120_000 };
const NO_STREAMS = { take: () => Promise.reject(new Error('no streams here')) };

/** What a test made, released after it even when it failed: an open pipe would keep the test process alive. */
const releases: (() => void)[] = [];

function openStdio(options: ForwardedStdioOptions): Promise<ForwardedStdio> {
  return ForwardedStdio.open(options).then((stdio) => {
    releases.push(() => stdio.close());
    return stdio;
  });
}

/** A channel over pipes: the daemon's ends, and the far ends where the process runs. */
function pipeChannel(options: { stderr: boolean } = { stderr: true }) {
  const stdin = pipe();
  const stdout = pipe();
  const stderr = pipe();
  const sizes: WindowSize[] = [];
  const channel: StdioChannel = {
    stdin: new Socket({ fd: stdin.write, readable: false, writable: true }),
    stdout: new Socket({ fd: stdout.read, readable: true, writable: false }),
    ...(options.stderr ? { stderr: new Socket({ fd: stderr.read, readable: true, writable: false }) } : {}),
    resize: async (size) => {
      sizes.push(size);
    },
  };
  if (!options.stderr) closeSync(stderr.read);
  const process = {
    stdin: new Socket({ fd: stdin.read, readable: true, writable: false }),
    stdout: new Socket({ fd: stdout.write, readable: false, writable: true }),
    stderr: new Socket({ fd: stderr.write, readable: false, writable: true }),
  };
  releases.push(() => {
    for (const stream of [channel.stdin, channel.stdout, channel.stderr, ...Object.values(process)]) stream?.destroy();
  });
  return { channel, process, sizes };
}

async function readAll(stream: Readable): Promise<Buffer> {
  return Buffer.concat(await stream.toArray());
}

describe('stdio forwarded over a byte channel', () => {
  let dir: string;
  const url = (id: string) => `ttrpc+unix://${dir}/task.sock?streaming_id=${id}`;
  const fifo = (name: string) => {
    const path = join(dir, name);
    execFileSync('mkfifo', [path]);
    return path;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kuasar-forwarded-'));
  });

  afterEach(() => {
    for (const release of releases.splice(0)) release();
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(
    'delivers all the process wrote before its channel closed, to a FIFO and to a stream; no stdin reads end-of-file',
    HANG_GUARD,
    async () => {
      const stdoutFifo = fifo('all-out');
      const stderrStream = new PassThrough();
      const stdio = await openStdio({
        stdio: { stdin: '', stdout: stdoutFifo, stderr: url('all-stderr'), terminal: false },
        streams: { take: async () => stderrStream },
        log,
      });
      // containerd's reader of the FIFO, once the daemon's writer holds it open.
      const fifoReader = new Socket({
        fd: openSync(stdoutFifo, constants.O_RDONLY | constants.O_NONBLOCK),
        readable: true,
        writable: false,
      });
      releases.push(() => fifoReader.destroy());
      const fromFifo = readAll(fifoReader);
      const fromStream = readAll(stderrStream);
      const { channel, process } = pipeChannel();
      stdio.forward(channel);

      // More than a pipe holds, so that most of it is still to be copied when the channel closes.
      const out = randomBytes(512 * 1024);
      const err = randomBytes(200 * 1024);
      process.stdout.end(out);
      process.stderr.end(err);
      assert.equal((await readAll(process.stdin)).length, 0, 'no stdin: end-of-file at once');
      // The channel ends: no read grace is waited out (the hang guard would end the test).
      await stdio.finish({ readGraceMs: 600_000, deliverMs: 600_000 });
      const [stdout, stderr] = await Promise.all([fromFifo, fromStream]);
      assert.equal(stdout.length, out.length);
      assert.ok(stdout.equals(out), 'stdout arrived in full and in order');
      assert.equal(stderr.length, err.length);
      assert.ok(stderr.equals(err), 'stderr arrived in full and in order');
    },
  );

  it("passes stdin on and ends it with containerd's end of a FIFO, without a terminal", HANG_GUARD, async () => {
    const stdinFifo = fifo('in-fifo');
    const stdio = await openStdio({ stdio: { stdin: stdinFifo, stdout: '', stderr: '', terminal: false }, streams: NO_STREAMS, log });
    const writer = openSync(stdinFifo, constants.O_WRONLY | constants.O_NONBLOCK); // containerd's
    const { channel, process, sizes } = pipeChannel();
    stdio.forward(channel);
    writeSync(writer, 'typed\n');
    closeSync(writer);
    assert.equal((await readAll(process.stdin)).toString(), 'typed\n', 'then end-of-file, without CloseIO');
    await stdio.resize({ width: 80, height: 24 });
    assert.deepEqual(sizes, [], 'no terminal, nothing to resize');
    process.stdout.end();
    process.stderr.end();
    await stdio.finish({ readGraceMs: 600_000, deliverMs: 600_000 });
  });

  it("ends a terminal's stdin on CloseIO only, and passes resizes on", HANG_GUARD, async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    const stdio = await openStdio({
      stdio: { stdin: url('t-stdin'), stdout: url('t-stdout'), stderr: '', terminal: true },
      streams: { take: async (id) => (id === 't-stdin' ? input : output) },
      log,
    });
    const fromOutput = readAll(output);
    const { channel, process, sizes } = pipeChannel({ stderr: false });
    stdio.forward(channel);
    const typed = readAll(process.stdin);
    input.end('typed\n');
    await new Promise((resolve) => input.once('end', resolve));
    assert.equal(channel.stdin.writableEnded, false, "containerd's end of input is no end of a terminal's");

    await stdio.resize({ width: 100, height: 40 });
    assert.deepEqual(sizes, [{ width: 100, height: 40 }]);

    stdio.closeStdin();
    assert.equal((await typed).toString(), 'typed\n', 'then the end, which the far side turns into the end-of-file character');
    process.stdout.end('echoed\r\n');
    await stdio.finish({ readGraceMs: 600_000, deliverMs: 600_000 });
    assert.equal((await fromOutput).toString(), 'echoed\r\n');
    await stdio.resize({ width: 1, height: 1 });
    assert.equal(sizes.length, 1, 'the terminal is gone');
  });

  it('applies a CloseIO that came before forwarding once forwarding begins, after what containerd sent', HANG_GUARD, async () => {
    const input = new PassThrough();
    const stdio = await openStdio({
      stdio: { stdin: url('early-stdin'), stdout: '', stderr: '', terminal: true },
      streams: { take: async () => input },
      log,
    });
    input.end('sent before\n');
    stdio.closeStdin();
    const { channel, process } = pipeChannel({ stderr: false });
    stdio.forward(channel);
    // With a terminal only CloseIO ends stdin: the end-of-file here is the early CloseIO's.
    assert.equal((await readAll(process.stdin)).toString(), 'sent before\n');
    process.stdout.end();
    await stdio.finish({ readGraceMs: 600_000, deliverMs: 600_000 });
  });

  it(
    'gives up a channel still open after the exit once it is idle for the read grace, with what was read delivered',
    HANG_GUARD,
    async () => {
      const output = new PassThrough();
      const stdio = await openStdio({
        stdio: { stdin: '', stdout: url('g-stdout'), stderr: '', terminal: false },
        streams: { take: async () => output },
        log,
      });
      const delivered = readAll(output);
      const { channel, process } = pipeChannel();
      stdio.forward(channel);
      // The process has exited; a child of it still holds its stdout there and writes nothing more.
      process.stdout.write('written before the exit\n');
      process.stderr.end();
      await stdio.finish({ readGraceMs: 100, deliverMs: 600_000 });
      assert.equal((await delivered).toString(), 'written before the exit\n');
      assert.equal(channel.stdout.destroyed, true, 'the channel is released');
    },
  );

  it("ends stdin at once on abort, containerd's writer still open", HANG_GUARD, async () => {
    const stdinFifo = fifo('abort-in');
    const stdio = await openStdio({ stdio: { stdin: stdinFifo, stdout: '', stderr: '', terminal: false }, streams: NO_STREAMS, log });
    const writer = openSync(stdinFifo, constants.O_WRONLY | constants.O_NONBLOCK);
    const { channel, process } = pipeChannel();
    stdio.forward(channel);
    const received = readAll(process.stdin);
    writeSync(writer, 'typed\n');
    await new Promise((resolve) => process.stdin.once('readable', resolve));
    stdio.abortStdin();
    assert.equal((await received).toString(), 'typed\n', 'end-of-file');
    assert.equal(channel.stdin.destroyed, true);
    closeSync(writer);
  });

  it('forwards once: a second channel is refused, and one given after close is released at once', HANG_GUARD, async () => {
    const open = () => openStdio({ stdio: { stdin: '', stdout: '', stderr: '', terminal: false }, streams: NO_STREAMS, log });
    const twice = await open();
    const first = pipeChannel();
    twice.forward(first.channel);
    const second = pipeChannel();
    assert.throws(
      () => twice.forward(second.channel),
      (err: unknown) => err instanceof RuntimeError && err.code === Code.Internal,
    );
    twice.close();
    assert.equal(first.channel.stdout.destroyed, true);

    const closed = await open();
    closed.close();
    const late = pipeChannel();
    closed.forward(late.channel);
    assert.equal(late.channel.stdin.destroyed, true);
    assert.equal(late.channel.stdout.destroyed, true);
  });
});
