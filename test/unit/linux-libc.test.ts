import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { ErrnoError, errnoName, hasErrnoCode } from '../../src/linux/libc/binding.js';
import { closeFd, pipe, POLLIN, pollNow } from '../../src/linux/libc/files.js';
import { readProcStat } from '../../src/linux/proc.js';
import {
  decodeWaitStatus,
  isChildSubreaper,
  prctl,
  releaseFreeMemory,
  setChildSubreaper,
  waitpid,
  WNOHANG,
} from '../../src/linux/libc/processes.js';
import { acceptNow, connectUnix, listenUnix, receiveMessage, setSocketTimeouts } from '../../src/linux/libc/sockets.js';

describe('decodeWaitStatus', () => {
  it('decodes a normal exit (WIFEXITED/WEXITSTATUS)', () => {
    assert.deepEqual(decodeWaitStatus(7 << 8), { raw: 7 << 8, exitCode: 7 });
    assert.deepEqual(decodeWaitStatus(0), { raw: 0, exitCode: 0 });
    assert.equal(decodeWaitStatus(255 << 8).exitCode, 255);
  });

  it('decodes a signal death (WIFSIGNALED/WTERMSIG/WCOREDUMP)', () => {
    assert.deepEqual(decodeWaitStatus(9), { raw: 9, signal: 9, coreDumped: false });
    assert.deepEqual(decodeWaitStatus(0x80 | 11), { raw: 0x80 | 11, signal: 11, coreDumped: true });
  });

  it('reports neither code nor signal for a stopped status', () => {
    assert.deepEqual(decodeWaitStatus((19 << 8) | 0x7f), { raw: (19 << 8) | 0x7f });
  });
});

describe('libc calls', () => {
  it('hands back to the kernel what ended threads left free in the allocator (malloc_trim)', async () => {
    releaseFreeMemory();
    // Each Node worker thread allocates from a C arena of its own, and leaves it free on exit.
    const threads = Array.from({ length: 8 }, () => new Worker('require("node:worker_threads").parentPort.postMessage(1)', { eval: true }));
    await Promise.all(threads.map((t) => new Promise((resolve) => t.once('message', resolve))));
    await Promise.all(threads.map((t) => t.terminate()));
    assert.equal(releaseFreeMemory(), true, 'some memory was released');
  });

  it('names the errno and the operation when a call fails', () => {
    assert.throws(
      () => waitpid(1, WNOHANG),
      (err: unknown) => {
        assert.ok(err instanceof ErrnoError);
        assert.equal(err.code, 'ECHILD');
        assert.equal(err.operation, 'waitpid(1)');
        assert.match(err.message, /^waitpid\(1\): ECHILD$/);
        assert.ok(hasErrnoCode(err, 'ENOENT', 'ECHILD'));
        return true;
      },
    );
  });

  it('rejects an unknown prctl option with EINVAL', () => {
    assert.throws(() => prctl(0x7fffffff), { name: 'ErrnoError', code: 'EINVAL' });
  });

  it('turns this process into a child subreaper and back', () => {
    setChildSubreaper(true);
    assert.equal(isChildSubreaper(), true);
    setChildSubreaper(false);
    assert.equal(isChildSubreaper(), false);
  });

  it('goes on waiting when a signal interrupts a blocking recvmsg (EINTR on a socket with a receive timeout)', async () => {
    // signal(7): with SO_RCVTIMEO set, recvmsg is not restarted after a signal handler ran, even
    // one installed with SA_RESTART as Node's are. A child signals this process while its main
    // thread sleeps in recvmsg (the kernel hands a process-directed signal to the main thread
    // when it does not block it), then sends the message it waits for.
    const dir = await mkdtemp(join(tmpdir(), 'libc-eintr-'));
    const path = join(dir, 'peer.sock');
    const listener = listenUnix(path);
    const client = connectUnix(path, 'stream');
    const server = acceptNow(listener)!;
    let signals = 0;
    const onSignal = (): void => void signals++;
    process.on('SIGUSR2', onSignal);
    try {
      setSocketTimeouts(client, 60_000); // a hang guard: the message comes long before
      const child = spawn('sh', ['-c', 'sleep 0.5; kill -USR2 $PPID; sleep 0.5; printf "after the signal" >&3'], {
        stdio: ['ignore', 'inherit', 'inherit', server],
      });
      const received = receiveMessage(client, 64, 0);
      assert.equal(received.data.toString(), 'after the signal', 'the interrupted call was made again and got the message');
      assert.deepEqual(await once(child, 'exit'), [0, null]);
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(signals, 1, 'the signal did arrive (and its handler ran once the call returned)');
    } finally {
      process.off('SIGUSR2', onSignal);
      for (const fd of [client, server, listener]) closeFd(fd);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('polls through a flood of signals: a zero-timeout poll interrupted (EINTR) is made again, not reported', async () => {
    // A pending signal makes even a zero-timeout poll fail with EINTR. The fd keeper's watch
    // polls every second while SIGCHLDs arrive; an EINTR thrown there once ended kuasard. The
    // child sends a bounded number of signals (an endless flood, with the event loop blocked by
    // this loop, would fill libuv's signal pipe and lose the child's own SIGCHLD).
    const { read, write } = pipe();
    const onSignal = (): void => undefined;
    process.on('SIGUSR2', onSignal);
    const child = spawn('sh', ['-c', `i=0; while [ $i -lt 3000 ]; do kill -USR2 ${process.pid}; i=$((i+1)); done`], { stdio: 'ignore' });
    const exited = once(child, 'exit');
    try {
      let polls = 0;
      // Poll until the child has sent them all (it is a zombie then); the count is a hang guard.
      while (readProcStat(child.pid!)?.state !== 'Z' && polls < 10_000_000) {
        assert.equal(pollNow(read, POLLIN), 0, 'nothing to read, and no error');
        polls++;
      }
      assert.deepEqual(await exited, [0, null], 'the child sent every signal');
    } finally {
      child.kill('SIGKILL');
      process.off('SIGUSR2', onSignal);
      closeFd(read);
      closeFd(write);
    }
  });

  it('names errnos it knows and numbers those it does not', () => {
    assert.equal(errnoName(22), 'EINVAL');
    assert.equal(errnoName(99999), 'errno 99999');
  });
});
