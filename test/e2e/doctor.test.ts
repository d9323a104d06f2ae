// `kuasar doctor` and `enabled`, for real. On this machine: doctor's answers are held against
// what the test finds out itself (runc and runsc answer, /dev/kvm is there or not, a negative
// oom_score_adj is refused or not, the cgroup layout, containerd's version, the guest image), and
// its tiny container and probes leave nothing. On a stand-in host (a configuration naming a
// runtime and a QEMU that do not exist, a state_dir too long for task sockets): those checks
// fail with their fix, doctor exits 1, and kuasard refuses to start with the same reasons. And
// a kind enabled = "auto" whose checks fail is not served while the others are: its CRI handler
// answers why.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import { containerdConfigSnippet } from '../../src/config/containerd.js';
import { parseConfig } from '../../src/config/config.js';
import { renderKuasardConfigWith } from '../../src/devenv/config.js';
import { startEnvironment } from '../../src/devenv/environment.js';
import { diffHost, NO_LEAKS, snapshotHost } from '../../src/devenv/leaks.js';
import { runPod } from '../../src/devenv/pod-runs.js';
import { listProcesses } from '../../src/devenv/processes.js';
import type { DoctorReport } from '../../src/doctor/run.js';
import { DEFAULT_IMAGE_DIR, readManifest } from '../../src/guest/image/layout.js';
import type { CheckResult } from '../../src/kind-api/checks.js';
import { KUASARD_ENTRY } from '../../src/install/kuasard-node.js';

const CLI_DIR = new URL('../../src/cli/', import.meta.url).pathname;
const KUASAR = join(CLI_DIR, 'kuasar.js');

type Json = DoctorReport & { served: string[]; refusal: string | null; exitStatus: number };

function doctor(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [KUASAR, 'doctor', ...args], { encoding: 'utf8' });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

function check(report: DoctorReport, group: string, name: string): CheckResult {
  const checks = group === 'host' ? report.host : report.kinds.find((k) => k.name === group)?.checks;
  const found = checks?.find((c) => c.name === name);
  assert.ok(found, `no check ${group}/${name} in ${JSON.stringify(report)}`);
  return found;
}

/** A command exits 0 here. */
const answers = (command: string, args: string[]): boolean => spawnSync(command, args, { stdio: 'ignore' }).status === 0;

/** What the checks may leave anywhere: their scratch directories, the tiny container's cgroup, processes. */
function doctorTraces(): string[] {
  const host = snapshotHost({ cgroupPatterns: [/kuasar-doctor-/] });
  return [
    ...readdirSync(tmpdir()).filter((name) => name.startsWith('kuasar-checks-')),
    ...host.cgroups,
    ...host.mounts.filter((m) => /kuasar-checks-|kuasar-doctor-/.test(m.mountPoint)).map((m) => m.mountPoint),
    ...listProcesses()
      .filter((p) => /kuasar-checks-|kuasar-doctor-/.test(p.cmdline))
      .map((p) => `${p.pid}: ${p.cmdline}`),
  ];
}

describe('kuasar doctor on this machine', () => {
  let dir: string;
  let stateDir: string;
  let config: string;
  let containerdConfig: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'doctor-e2e-'));
    stateDir = `/run/kdoc-${process.pid}`;
    config = join(dir, 'kuasard.toml');
    writeFileSync(config, stringifyToml({ state_dir: stateDir }));
    // containerd's configuration as `kuasar config containerd` completes it, clamping oom_score_adj.
    containerdConfig = join(dir, 'containerd.toml');
    const snippet = containerdConfigSnippet(parseConfig(parseToml(readFileSync(config, 'utf8'))));
    writeFileSync(containerdConfig, `version = 3\n[plugins.'io.containerd.cri.v1.runtime']\n  restrict_oom_score_adj = true\n\n${snippet}`);
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('says what works here and what does not, as the test finds it, and leaves nothing', async () => {
    const tracesBefore = doctorTraces();
    const run = doctor(['--config', config, '--containerd-config', containerdConfig, '--json']);
    const report = JSON.parse(run.stdout) as Json;
    assert.deepEqual(doctorTraces(), tracesBefore, 'the checks left nothing behind');

    // The host.
    assert.equal(check(report, 'host', 'root').status, 'ok');
    const cgroups = check(report, 'host', 'cgroups').finding;
    if (existsSync('/sys/fs/cgroup/cgroup.controllers')) assert.match(cgroups, /^v2 \(unified\)/);
    else if (existsSync('/sys/fs/cgroup/unified')) assert.match(cgroups, /^hybrid/);
    else assert.match(cgroups, /^v1 \(legacy\)/);
    const lowered = answers('/bin/sh', ['-c', 'echo -998 > /proc/self/oom_score_adj']);
    const oom = check(report, 'host', 'oom_score_adj');
    assert.equal(oom.status, 'ok', 'refused or not, containerd clamps it here');
    assert.match(oom.finding, lowered ? /may lower it to -998/ : /may not lower it .* containerd's CRI clamps/);
    const containerdVersion = /\d+\.\d+\.\d+\S*/.exec(spawnSync('containerd', ['--version'], { encoding: 'utf8' }).stdout)?.[0];
    assert.match(check(report, 'host', 'containerd').finding, new RegExp(`^${containerdVersion?.replace(/[.+]/g, '\\$&')} `));
    assert.equal(check(report, 'host', 'containerd config').status, 'ok');

    // runc: its runtime ("auto" by default: crun where it runs the tiny container, as kuasard chooses at start) answers and a container runs.
    assert.ok(answers('runc', ['--version']), 'this machine has runc');
    const ociRuntime = check(report, 'runc', 'oci runtime');
    assert.equal(ociRuntime.status, 'ok');
    assert.match(
      ociRuntime.finding,
      answers('crun', ['--version']) ? /^crun .*; auto: crun's self-test passed in \d+ ms$/ : /^runc .*; auto: crun is not installed$/,
    );
    assert.match(check(report, 'runc', 'tiny container').finding, /^ran in new pid, ipc, uts, mount and network namespaces and a cgroup/);

    // appkernel: runsc answers; gVisor's kvm platform only where there is a /dev/kvm.
    assert.ok(answers('runsc', ['--version']), 'this machine has runsc');
    assert.equal(check(report, 'appkernel', 'platform systrap').status, 'ok');
    const others = check(report, 'appkernel', 'other platforms').finding;
    assert.match(others, /ptrace works/);
    if (!existsSync('/dev/kvm')) assert.match(others, /kvm does not: .*\/dev\/kvm/);

    // vmm: QEMU, and KVM only where a probe guest really runs on it; else TCG with a warning.
    const accelerator = check(report, 'vmm', 'accelerator');
    if (!existsSync('/dev/kvm')) {
      assert.equal(accelerator.status, 'warn');
      assert.match(accelerator.finding, /^TCG: KVM does not work here/);
    } else {
      assert.notEqual(accelerator.status, 'fail');
    }
    const manifest = await readManifest(DEFAULT_IMAGE_DIR);
    assert.match(check(report, 'vmm', 'guest image').finding, new RegExp(`kernel ${manifest.kernelRelease.replace(/\./g, '\\.')}`));

    for (const kind of report.kinds) {
      assert.equal(check(report, kind.name, 'socket paths').status, 'ok');
      assert.equal(check(report, kind.name, 'cri handler').status, 'ok', `containerd's config registers ${kind.name}`);
      assert.equal(kind.canRun, true, `${kind.name}: ${JSON.stringify(kind.checks)}`);
    }
    assert.deepEqual(report.served, ['runc', 'wasm', 'appkernel', 'vmm']);
    assert.equal(report.exitStatus, 0);
    assert.equal(run.status, 0);
  });

  it('prints the same for people, grouped by kind, each warning with its fix', () => {
    const run = doctor(['--config', config, '--containerd-config', join(dir, 'missing.toml')]);
    assert.equal(run.status, 0, run.stderr);
    assert.match(run.stdout, /^host\n {2}ok +root +running as root\n/);
    assert.match(
      run.stdout,
      /\n {2}warn +containerd config +.*missing\.toml: cannot read it: ENOENT\n +fix: give its path with --containerd-config/,
    );
    for (const kind of ['runc', 'wasm', 'appkernel', 'vmm'])
      assert.match(run.stdout, new RegExp(`\\n${kind}: can run here; enabled = "auto": served\\n`));
    assert.match(run.stdout, /\nkuasard would serve runc, wasm, appkernel, vmm\n$/);
  });
});

describe('kuasar doctor and kuasard on a stand-in host', () => {
  let dir: string;
  const longStateDir = '/run/kuasar-doctor-stand-in-host-state';

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'doctor-e2e-'));
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(longStateDir, { recursive: true, force: true });
  });

  const writeConfig = (name: string, doc: object): string => {
    const path = join(dir, name);
    writeFileSync(path, stringifyToml(doc));
    return path;
  };

  it('a missing runtime and QEMU, and a state_dir too long: those checks fail with their fix, exit status 1', () => {
    const config = writeConfig('stand-in.toml', {
      state_dir: longStateDir,
      kinds: {
        runc: { enabled: true, oci_runtime: '/nonexistent/runc' },
        vmm: { enabled: 'auto', qemu: '/nonexistent/qemu', image_dir: '/nonexistent/image' },
      },
    });
    const run = doctor(['--config', config, '--containerd-config', join(dir, 'missing.toml'), '--json']);
    assert.equal(run.status, 1);
    const report = JSON.parse(run.stdout) as Json;
    assert.equal(report.exitStatus, 1);

    const runtime = check(report, 'runc', 'oci runtime');
    assert.deepEqual([runtime.status, runtime.finding], ['fail', '/nonexistent/runc: not found']);
    assert.match(runtime.fix ?? '', /install runc \(apt-get install runc\), or set \[kinds\.runc\] oci_runtime/);
    assert.equal(check(report, 'runc', 'tiny container').status, 'skipped');

    const qemu = check(report, 'vmm', 'qemu');
    assert.deepEqual([qemu.status, qemu.finding], ['fail', '/nonexistent/qemu: not found']);
    assert.match(qemu.fix ?? '', /apt-get install qemu-system-x86/);
    const image = check(report, 'vmm', 'guest image');
    assert.equal(image.status, 'fail');
    assert.equal(image.fix, 'build it: kuasar image build --out /nonexistent/image');

    // <state_dir>/<kind>/<64-character id>/task.sock: for runc, 80 characters more than state_dir.
    const sockets = check(report, 'runc', 'socket paths');
    assert.equal(sockets.status, 'fail');
    assert.match(
      sockets.finding,
      new RegExp(`task socket would have ${longStateDir.length + 80} characters \\(state_dir ${longStateDir} is too long\\)`),
    );
    assert.equal(sockets.fix, 'set state_dir to at most 27 characters (the default is /run/kuasar)');
    for (const kind of report.kinds) assert.equal(kind.canRun, false, kind.name);
    assert.match(
      report.refusal ?? '',
      /^runc is enabled = true but cannot run here: socket paths: .*; oci runtime: \/nonexistent\/runc: not found/,
    );
    assert.deepEqual(report.served, []);
  });

  it('kuasard refuses to start when a kind enabled = true cannot run, or when no kind can, saying why', () => {
    // Short enough for task sockets: only the runtime is missing.
    const stateDir = `/run/kdoc-${process.pid}`;
    const kuasard = (config: string) => spawnSync(process.execPath, [KUASARD_ENTRY, '--config', config], { encoding: 'utf8' });
    const required = kuasard(
      writeConfig('required.toml', {
        state_dir: stateDir,
        kinds: { runc: { enabled: true, oci_runtime: '/nonexistent/runc' }, wasm: { enabled: true } },
      }),
    );
    assert.equal(required.status, 1);
    assert.match(
      required.stderr,
      /runc is enabled = true but cannot run here: oci runtime: \/nonexistent\/runc: not found \(fix: install runc/,
    );
    assert.match(required.stderr, /kuasar doctor tells more/);
    assert.doesNotMatch(required.stderr, /wasm/, 'wasm can run');
    rmSync(stateDir, { recursive: true, force: true });

    const tooLong = kuasard(writeConfig('too-long.toml', { state_dir: longStateDir }));
    assert.equal(tooLong.status, 1);
    assert.match(tooLong.stderr, /no sandbox kind can run here:\nrunc: socket paths: .*set state_dir to at most 27 characters/);
    assert.match(tooLong.stderr, /\nvmm: socket paths: .*set state_dir to at most 28 characters/);
  });
});

describe('kuasard with enabled = "auto"', () => {
  it('serves the kinds whose checks pass; the handler of one whose checks fail answers why; nothing stays', async () => {
    const env = await startEnvironment({
      kuasardConfig: renderKuasardConfigWith({
        vmm: { enabled: 'auto', qemu: '/nonexistent/qemu', image_dir: '/nonexistent/image' },
        appkernel: { enabled: false },
      }),
    });
    try {
      const left = readFileSync(env.paths.kuasardLog, 'utf8')
        .split('\n')
        .filter((line) => line.includes('kind not served'));
      assert.equal(left.length, 1, 'one kind is left');
      assert.match(left[0] ?? '', /"kind":"vmm".*qemu: \/nonexistent\/qemu: not found/);

      const before = snapshotHost({ dirs: [env.paths.kuasarState] });
      await assert.rejects(
        env.cri.runtime.runPodSandbox({ config: env.podConfig({ name: 'not-served' }), runtimeHandler: env.handlers.kuasar['vmm'] ?? '' }),
        (err: Error) => {
          assert.match(err.message, /kuasar-vmm is not served by kuasard on this host: /);
          assert.match(err.message, /qemu: \/nonexistent\/qemu: not found \(fix: install QEMU \(apt-get install qemu-system-x86\)/);
          assert.match(
            err.message,
            /guest image: \/nonexistent\/image lacks vmlinux, .*\(fix: build it: kuasar image build --out \/nonexistent\/image\)/,
          );
          return true;
        },
      );
      assert.deepEqual(diffHost(before, snapshotHost({ dirs: [env.paths.kuasarState] }), { scope: env.scope }), NO_LEAKS);

      for (const kind of ['runc', 'wasm']) {
        const { leaks } = await runPod(
          env,
          env.handlers.kuasar[kind] ?? '',
          env.podConfig({ name: `served-${kind}` }),
          [env.paths.kuasarState],
          async () => {},
        );
        assert.deepEqual(leaks, NO_LEAKS);
      }
    } finally {
      await env.stop();
    }
  });
});
