// The daemon's side of a terminal, on a real pty pair made here (openpty, no root needed): its
// output ends only after everything the other side wrote before hanging up, however much that is.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { closeSync, readSync, writeSync } from 'node:fs';
import { describe, it } from 'node:test';
import { PtyMaster } from '../../src/io/pty-master.js';
import { hasErrnoCode, libcGroup } from '../../src/linux/libc/binding.js';
import { setNonBlocking } from '../../src/linux/libc/files.js';

const ptys = libcGroup((lib) => ({
  openpty: lib.func('int openpty(_Out_ int *amaster, _Out_ int *aslave, void *name, void *termp, void *winp)'),
}));

/** A new pty pair: the master, and the other side (what a container's process holds). */
function openPty(): { master: number; other: number } {
  const master = new Int32Array(1);
  const other = new Int32Array(1);
  assert.equal(ptys().openpty(master, other, null, null, null), 0, 'openpty');
  return { master: master[0]!, other: other[0]! };
}

/** Writes `bytes` to the non-blocking descriptor `fd`, or as many as it takes; how many it took. */
function writeUpTo(fd: number, bytes: number): number {
  const chunk = Buffer.alloc(1024, 'x');
  let written = 0;
  while (written < bytes) {
    try {
      written += writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - written));
    } catch (err) {
      if (hasErrnoCode(err, 'EAGAIN')) break;
      throw err;
    }
  }
  return written;
}

async function readAll(pty: PtyMaster): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of pty.output) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('pty master', () => {
  it('delivers all that the other side wrote before it hung up, beyond what one read takes', async () => {
    const { master, other } = openPty();
    const pty = new PtyMaster(master);
    try {
      const output = readAll(pty);
      // Written and hung up before the event loop polls the master: it then reports the hang-up
      // with the data, a read takes what the line discipline holds (4 KiB), the rest still waits
      // in the kernel's flip buffer. libuv alone reported end-of-file after that first read.
      setNonBlocking(other, true);
      const written = writeUpTo(other, 32 * 1024);
      closeSync(other);
      assert.ok(written > 8 * 1024, `the other side took ${written} bytes: more than two reads' worth`);
      const received = await output;
      assert.equal(received.length, written);
      assert.equal(received.toString(), 'x'.repeat(written));
    } finally {
      pty.close();
    }
  });

  it('ends when the other side hangs up without writing; the input reaches the other side', async () => {
    const { master, other } = openPty();
    const pty = new PtyMaster(master);
    try {
      const output = readAll(pty);
      pty.input.write('typed');
      // The terminal echoes input back (ECHO is on by default): the master reads it as output.
      await new Promise<void>((resolve) => pty.output.once('data', () => resolve()));
      closeSync(other);
      assert.match((await output).toString(), /^typed/);
    } finally {
      pty.close();
    }
  });

  it('closes the master on close(): the other side is hung up', async () => {
    const { master, other } = openPty();
    const pty = new PtyMaster(master);
    const inputClosed = once(pty.input, 'close');
    pty.close();
    pty.close();
    await inputClosed;
    try {
      // Not EAGAIN (an open terminal with nothing to read): a hung-up terminal reads end-of-file.
      setNonBlocking(other, true);
      assert.equal(readSync(other, Buffer.alloc(16)), 0);
    } finally {
      closeSync(other);
    }
  });
});
