// The guest agent's pure parts: its options from flags, environment and the kernel command line,
// the bounded output buffer ReadStdio long-polls on, and its version.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';

import { Code, RuntimeError } from '../../src/base/errors.js';
import { DEFAULT_PID_HOLDER, DEFAULT_STATE_DIR, parseAgentOptions, parseKernelCmdline } from '../../src/guest/agent/options.js';
import { OutputBuffer } from '../../src/guest/agent/output-buffer.js';
import { BASE_MOUNTS, enableControllers } from '../../src/guest/agent/pid1.js';
import { sysctlPath } from '../../src/guest/agent/sandbox-sysctls.js';
import { AGENT_VERSION } from '../../src/guest/agent/version.js';

describe('guest agent options', () => {
  const cmdline = 'BOOT_IMAGE=/vmlinuz console=ttyS0 quiet kuasar.agent_port=agent.0 kuasar.log_level=debug panic=-1\n';

  it('parses the kernel command line, quoted values included', () => {
    const params = parseKernelCmdline('a=1 quiet b="two words" c=x=y\n');
    assert.deepEqual(
      [...params],
      [
        ['a', '1'],
        ['quiet', ''],
        ['b', 'two words'],
        ['c', 'x=y'],
      ],
    );
  });

  it('takes the port and log level from the kernel command line', () => {
    assert.deepEqual(parseAgentOptions([], {}, cmdline), {
      agentPort: 'agent.0',
      logLevel: 'debug',
      stateDir: DEFAULT_STATE_DIR,
      pidHolder: DEFAULT_PID_HOLDER,
    });
  });

  it('lets flags win over the environment and the environment over the kernel', () => {
    const env = { KUASAR_AGENT_LISTEN: '/env.sock', KUASAR_AGENT_STATE_DIR: '/env-state' };
    assert.deepEqual(parseAgentOptions(['--listen', '/flag.sock', '--log-level=warn', '--pid-holder', '/idle'], env, cmdline), {
      agentPort: 'agent.0',
      logLevel: 'warn',
      stateDir: '/env-state',
      pidHolder: '/idle',
      listen: '/flag.sock',
    });
    assert.equal(parseAgentOptions([], env, '').listen, '/env.sock');
  });

  it('refuses unknown flags, missing values and unknown log levels', () => {
    assert.throws(() => parseAgentOptions(['--bogus', 'x'], {}, ''), /unknown argument/);
    assert.throws(() => parseAgentOptions(['stray'], {}, ''), /unknown argument/);
    assert.throws(() => parseAgentOptions(['--listen'], {}, ''), /needs a value/);
    assert.throws(() => parseAgentOptions([], {}, 'kuasar.log_level=loud'), /log level/);
  });

  it('keeps its version equal to the package version', () => {
    const pkg = JSON.parse(readFileSync(path.resolve(import.meta.dirname, '../../../package.json'), 'utf8')) as { version: string };
    assert.equal(AGENT_VERSION, pkg.version);
  });

  it('maps sysctl names to /proc/sys paths', () => {
    assert.equal(sysctlPath('kernel.shmmni'), '/proc/sys/kernel/shmmni');
    assert.equal(sysctlPath('net.ipv4.ip_forward'), '/proc/sys/net/ipv4/ip_forward');
  });
});

describe('guest agent as PID 1', () => {
  it('enables the container controllers the kernel has, and only those', () => {
    const root = mkdtempSync(path.join(tmpdir(), 'kuasar-cgroup-'));
    try {
      writeFileSync(path.join(root, 'cgroup.controllers'), 'cpuset cpu io memory hugetlb misc\n');
      assert.deepEqual(enableControllers(root), ['cpu', 'memory', 'io']);
      assert.equal(readFileSync(path.join(root, 'cgroup.subtree_control'), 'utf8'), '+cpu +memory +io');
    } finally {
      rmSync(root, { recursive: true });
    }
  });

  it('mounts each file system after the one it lies in', () => {
    const targets = BASE_MOUNTS.map((m) => m.target);
    for (const [index, target] of targets.entries()) {
      for (const parent of targets.slice(index + 1)) assert.ok(!target.startsWith(`${parent}/`), `${target} before ${parent}`);
    }
  });
});

describe('output buffer', () => {
  function buffer(limit: number) {
    const events: string[] = [];
    const output = new OutputBuffer({ limit, pause: () => events.push('pause'), resume: () => events.push('resume') });
    return { output, events };
  }

  it('waits for data, then answers at most max bytes per read, in order', async () => {
    const { output } = buffer(100);
    const pending = output.read(4);
    output.push(Buffer.from('hello'));
    output.push(Buffer.from(' world'));
    assert.equal(Buffer.from((await pending).data).toString(), 'hell');
    assert.equal(Buffer.from((await output.read(5)).data).toString(), 'o wor');
    assert.equal(Buffer.from((await output.read(100)).data).toString(), 'ld');
    assert.equal(output.bufferedBytes, 0);
  });

  it('gives what is left after the end, then eof, and eof again', async () => {
    const { output } = buffer(100);
    output.push(Buffer.from('tail'));
    output.end();
    output.push(Buffer.from('ignored'));
    assert.deepEqual(await output.read(10), { data: Buffer.from('tail'), eof: false, offset: 0 });
    assert.equal((await output.read(10)).eof, true);
    assert.equal((await output.read(10)).eof, true);
  });

  it('wakes a waiting reader at the end', async () => {
    const { output } = buffer(100);
    const pending = output.read(10);
    output.end();
    assert.deepEqual(await pending, { data: new Uint8Array(0), eof: true, offset: 0 });
  });

  it('pauses its source once full and resumes it once a read made room', async () => {
    const { output, events } = buffer(8);
    output.push(Buffer.from('12345'));
    assert.deepEqual(events, []);
    output.push(Buffer.from('6789'));
    assert.deepEqual(events, ['pause']);
    output.push(Buffer.from('more'));
    assert.deepEqual(events, ['pause'], 'paused once');
    await output.read(2);
    assert.deepEqual(events, ['pause'], 'still at the limit');
    await output.read(4);
    assert.deepEqual(events, ['pause', 'resume']);
  });

  it('keeps what a read from a position answered until a later read says it was delivered; a new reader from 0 gets it again', async () => {
    const { output, events } = buffer(8);
    const text = (chunk: { data: Uint8Array }) => Buffer.from(chunk.data).toString();
    output.push(Buffer.from('abcdef'));
    assert.deepEqual(
      { ...(await output.read(4, undefined, { offset: 0, delivered: 0 })), data: 'abcd' },
      { data: 'abcd', eof: false, offset: 0 },
    );
    assert.equal(text(await output.read(4, undefined, { offset: 4, delivered: 0 })), 'ef', 'read on from where the reader is');
    assert.equal(output.bufferedBytes, 6, 'nothing delivered yet: all kept');
    // The reader died with what it read: the next one knows nothing and reads from 0.
    const again = await output.read(10, undefined, { offset: 0, delivered: 0 });
    assert.deepEqual({ text: text(again), offset: again.offset }, { text: 'abcdef', offset: 0 });
    output.push(Buffer.from('gh'));
    assert.deepEqual(events, ['pause'], 'what is kept counts against the limit');
    const next = await output.read(10, undefined, { offset: 6, delivered: 4 });
    assert.deepEqual({ text: text(next), offset: next.offset }, { text: 'gh', offset: 6 });
    assert.equal(output.bufferedBytes, 4, 'what was delivered is forgotten');
    assert.deepEqual(events, ['pause', 'resume']);
    const fresh = await output.read(10, undefined, { offset: 0, delivered: 0 });
    assert.deepEqual(
      { text: text(fresh), offset: fresh.offset },
      { text: 'efgh', offset: 4 },
      'a new reader begins at the oldest byte kept',
    );
    output.end();
    assert.deepEqual(await output.read(10, undefined, { offset: 8, delivered: 8 }), { data: new Uint8Array(0), eof: true, offset: 8 });
    assert.equal(output.bufferedBytes, 0);
  });

  it('refuses a position past what was written, or delivered past offset', async () => {
    const { output } = buffer(100);
    output.push(Buffer.from('abc'));
    await assert.rejects(output.read(10, undefined, { offset: 4, delivered: 0 }), /offset 4 is past what the process wrote \(3 bytes\)/);
    await assert.rejects(output.read(10, undefined, { offset: 1, delivered: 2 }), /delivered \(2\) is past offset \(1\)/);
    assert.equal(Buffer.from((await output.read(10, undefined, { offset: 1, delivered: 1 })).data).toString(), 'bc');
  });

  it('gives up a read when its signal aborts, and serves the next one', async () => {
    const { output } = buffer(100);
    const controller = new AbortController();
    const pending = output.read(10, controller.signal);
    controller.abort(new RuntimeError(Code.Cancelled, 'gone'));
    await assert.rejects(pending, /gone/);
    output.push(Buffer.from('x'));
    assert.equal(Buffer.from((await output.read(10)).data).toString(), 'x');
  });
});
