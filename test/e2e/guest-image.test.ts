// The guest image, built for real (Debian's kernel package, the host's node, runc and busybox)
// and booted under QEMU (TCG: nested KVM is not usable here): the guest runs the image's own
// kernel, mounts the root image read-only, runs node with koffi from it, and powers itself off.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { type BuildResult, buildImage } from '../../src/guest/image/build.js';
import { imagePaths } from '../../src/guest/image/layout.js';

const skip = (process.getuid?.() !== 0 && 'needs root (apt-get download into /var/cache/kuasar)') || false;

/** A stand-in for the agent: it proves node runs in the guest and koffi loads there. */
const THROWAWAY_AGENT = `import koffi from 'koffi';
const libc = koffi.load('libc.so.6');
const getpid = libc.func('int getpid()');
console.log('throwaway-agent koffi=' + koffi.version + ' pid=' + getpid());
`;

/** SeaBIOS clears the terminal before the kernel writes: its escape sequences would glue onto the guest's first lines. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: the escape character is what is matched
const TERMINAL_ESCAPES = /\x1b(\[[0-9;?]*[A-Za-z]|c)/g;

interface Boot {
  lines: { atMs: number; text: string }[];
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  exitMs: number;
  pid: number;
}

/** Boots `dir`'s image with `append` on the kernel command line, until the guest ends (or a hang is cut at 3 minutes). */
function boot(dir: string, append: string): Promise<Boot> {
  const image = imagePaths(dir);
  const began = performance.now();
  const qemu = spawn(
    'qemu-system-x86_64',
    [
      ...['-accel', 'tcg', '-M', 'q35', '-m', '512', '-nodefaults', '-nographic', '-no-reboot', '-serial', 'stdio'],
      ...['-kernel', image.kernel, '-initrd', image.initrd, '-append', append],
      ...['-drive', `file=${image.rootfs},if=none,id=root,format=raw,readonly=on`, '-device', 'virtio-blk-pci,drive=root'],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const lines: Boot['lines'] = [];
  let pending = '';
  qemu.stdout.on('data', (chunk: Buffer) => {
    pending += chunk.toString('utf8');
    const parts = pending.split(/\r?\n/);
    pending = parts.pop()!;
    for (const text of parts) lines.push({ atMs: performance.now() - began, text: text.replace(TERMINAL_ESCAPES, '') });
  });
  let stderr = '';
  qemu.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  const hang = setTimeout(() => qemu.kill('SIGKILL'), 180_000);
  return new Promise((resolve, reject) => {
    qemu.on('error', reject);
    qemu.on('exit', (exitCode, signal) => {
      clearTimeout(hang);
      if (pending) lines.push({ atMs: performance.now() - began, text: pending });
      if (stderr.trim()) lines.push({ atMs: performance.now() - began, text: `qemu stderr: ${stderr.trim()}` });
      resolve({ lines, exitCode, signal, exitMs: performance.now() - began, pid: qemu.pid! });
    });
  });
}

const processExists = (pid: number): boolean => existsSync(`/proc/${pid}`);

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

describe('guest image', { skip }, () => {
  let base: string;
  let built: BuildResult;

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'kuasar-guest-image-'));
    await writeFile(join(base, 'agent.mjs'), THROWAWAY_AGENT);
    built = await buildImage({ outDir: join(base, 'image'), agentEntry: join(base, 'agent.mjs') });
  });
  after(async () => {
    await rm(base, { recursive: true, force: true });
    assert.equal(existsSync(base), false);
  });

  it('builds the four files the manifest describes, and leaves no work directory', async (t) => {
    t.diagnostic(`build: ${(built.durationMs / 1000).toFixed(1)} s (kernel package ${built.downloaded ? 'downloaded' : 'cached'})`);
    assert.equal(built.upToDate, false);
    assert.deepEqual(readdirSync(base).sort(), ['agent.mjs', 'image']);
    assert.deepEqual(readdirSync(built.outDir).sort(), ['initrd.img', 'manifest.json', 'rootfs.img', 'vmlinux']);
    assert.match(built.manifest.kernelRelease, /^\d+\.\d+\.\d+-\d+-amd64$/);
    for (const [name, record] of Object.entries(built.manifest.files)) {
      assert.equal(record.sha256, await sha256(join(built.outDir, name)), name);
      t.diagnostic(`${name}: ${(record.size / (1024 * 1024)).toFixed(1)} MiB`);
    }
  });

  it('is up to date for the same inputs, and rebuilt by force into the same bytes', async (t) => {
    const again = await buildImage({ outDir: built.outDir, agentEntry: join(base, 'agent.mjs') });
    assert.equal(again.upToDate, true);
    assert.equal(again.manifest.builtAt, built.manifest.builtAt);

    const other = await buildImage({ outDir: join(base, 'other'), agentEntry: join(base, 'agent.mjs'), force: true });
    t.diagnostic(`second build: ${(other.durationMs / 1000).toFixed(1)} s`);
    for (const name of ['initrd.img', 'rootfs.img', 'vmlinux']) {
      assert.equal(await sha256(join(base, 'other', name)), await sha256(join(built.outDir, name)), `${name} is reproducible`);
    }
    assert.equal(other.manifest.inputsKey, built.manifest.inputsKey);
    await rm(join(base, 'other'), { recursive: true });
    assert.deepEqual(readdirSync(base).sort(), ['agent.mjs', 'image']);
  });

  it('boots: the image kernel, the root image read-only, node with koffi; then the guest powers off', async (t) => {
    const script = [
      'mount -t proc proc /proc',
      'echo release=$(uname -r)',
      "grep ' / ' /proc/mounts",
      'touch /written 2>&1',
      '/usr/bin/node /usr/lib/kuasar/agent.mjs',
      '/usr/sbin/runc --version',
      'echo script-done',
      'poweroff -f',
    ].join('; ');
    const run = await boot(built.outDir, `console=ttyS0 panic=-1 kuasar.init=/bin/sh -- -c "${script}"`);
    const output = run.lines.map((l) => l.text).join('\n');
    const at = (pattern: RegExp) => run.lines.find((l) => pattern.test(l.text))?.atMs;

    assert.equal(run.signal, null, `qemu was killed (the guest hung):\n${output}`);
    assert.equal(run.exitCode, 0, output);
    assert.equal(processExists(run.pid), false);
    assert.match(output, new RegExp(`^release=${built.manifest.kernelRelease.replaceAll('.', '\\.')}$`, 'm'));
    assert.match(output, /^\/dev\/vda \/ squashfs ro[,\s]/m);
    assert.match(output, /Read-only file system/);
    assert.match(output, /^runc version \d+\.\d+\.\d+/m);
    assert.match(output, /^throwaway-agent koffi=\d+\.\d+\.\d+ pid=\d+$/m);
    assert.match(output, /^kuasar-init: root image mounted at [\d.]+s, starting \/bin\/sh$/m);
    t.diagnostic(
      `TCG boot: first kernel line ${at(/^\[\s*\d+\.\d+\]/)?.toFixed(0)} ms, init done ${at(/^kuasar-init:/)?.toFixed(0)} ms, ` +
        `node ran ${at(/^throwaway-agent/)?.toFixed(0)} ms, powered off ${run.exitMs.toFixed(0)} ms`,
    );
  });

  it('powers off with one clear line when the init it was asked for is missing', async () => {
    const run = await boot(built.outDir, 'console=ttyS0 panic=-1 quiet kuasar.init=/no/such/init');
    const output = run.lines.map((l) => l.text).join('\n');
    assert.equal(run.signal, null, `qemu was killed (the guest hung):\n${output}`);
    // With `quiet` nothing ends SeaBIOS's last line ("Booting from ROM..") before /init writes.
    assert.match(output, /kuasar-init: kuasar\.init=\/no\/such\/init is not in the root image, powering off$/m);
    assert.equal(processExists(run.pid), false);
  });
});
