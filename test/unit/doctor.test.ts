// The pure parts of `kuasar doctor` and of kuasard's checks at start: what a report makes kuasard
// do (serve, leave, refuse to start) and doctor's exit status; the socket-path limits per kind;
// the cgroup layouts; containerd's configuration as the checks read it; the report's two forms.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/config.js';
import type { KindEnabled } from '../../src/config/kind-schema.js';
import { containerdConfigCheck, criHandlerCheck, type ContainerdConfig, restrictsOomScoreAdj } from '../../src/doctor/containerd-checks.js';
import { describeCgroups } from '../../src/doctor/host-checks.js';
import { formatReport, reportJson } from '../../src/doctor/report.js';
import { type DoctorReport, exitStatus, servePlan } from '../../src/doctor/run.js';
import { adminSocketCheck, socketPathsCheck } from '../../src/doctor/socket-paths.js';
import { type CheckResult, canRun, fail, ok, skipped, warn } from '../../src/kind-api/checks.js';
import type { KindName } from '../../src/kinds/index.js';

const OK = ok('tool', 'there');
const FAILED = fail('tool', 'missing', 'install it');

function report(kinds: [KindName, KindEnabled, CheckResult[]][], host: CheckResult[] = [ok('root', 'root')]): DoctorReport {
  return {
    depth: 'doctor',
    host,
    kinds: kinds.map(([name, enabled, checks]) => ({ name, enabled, checks, canRun: canRun(host) && canRun(checks) })),
  };
}

test('a kind can run when none of its checks failed: warnings and skipped checks do not stop it', () => {
  assert.equal(canRun([OK, warn('accelerator', 'TCG', 'get KVM'), skipped('tiny container', 'doctor only')]), true);
  assert.equal(canRun([OK, FAILED]), false);
});

test('kuasard serves the kinds that can run, leaves an "auto" kind that cannot, and doctor exits 0', () => {
  const r = report([
    ['runc', 'auto', [OK]],
    ['wasm', true, [OK]],
    ['appkernel', 'auto', [OK, FAILED]],
    ['vmm', false, [FAILED]],
  ]);
  const plan = servePlan(r);
  assert.deepEqual(plan.serve, ['runc', 'wasm']);
  assert.deepEqual(plan.leave, [{ name: 'appkernel', reasons: ['tool: missing (fix: install it)'] }]);
  assert.equal(plan.refusal, undefined);
  assert.equal(exitStatus(r), 0);
});

test('a kind enabled = true that cannot run makes kuasard refuse to start, and doctor exit 1', () => {
  const r = report([
    ['runc', 'auto', [OK]],
    ['vmm', true, [OK, FAILED]],
  ]);
  assert.match(servePlan(r).refusal ?? '', /^vmm is enabled = true but cannot run here: tool: missing \(fix: install it\)$/);
  assert.equal(exitStatus(r), 1);
});

test('no kind that can run: kuasard refuses to start, and doctor exits 1', () => {
  const r = report([
    ['runc', 'auto', [FAILED]],
    ['wasm', false, [OK]],
  ]);
  assert.match(servePlan(r).refusal ?? '', /^no sandbox kind can run here:\nrunc: tool: missing/);
  assert.equal(exitStatus(r), 1);
  assert.match(servePlan(report([['runc', false, [OK]]])).refusal ?? '', /every kind is enabled = false/);
});

test('a failed host check stops every kind, and is named as the reason', () => {
  const r = report([['runc', 'auto', [OK]]], [fail('namespaces', 'no pid namespaces', 'boot another kernel')]);
  assert.equal(r.kinds[0]?.canRun, false);
  assert.match(servePlan(r).refusal ?? '', /runc: host namespaces: no pid namespaces \(fix: boot another kernel\)/);
});

test("socket paths: a kind's task sockets must fit below state_dir, each kind by its own name's length", () => {
  assert.equal(socketPathsCheck(parseConfig({}), 'appkernel').status, 'ok');
  // <state_dir>/<kind>/<64>/task.sock within 107: runc (4 letters) fits 27 characters, appkernel (9) 22.
  const config = parseConfig({ state_dir: `/${'s'.repeat(24)}` });
  assert.equal(socketPathsCheck(config, 'runc').status, 'ok');
  const long = socketPathsCheck(config, 'appkernel');
  assert.equal(long.status, 'fail');
  assert.match(long.finding, /task socket would have 110 characters/);
  assert.equal(long.fix, 'set state_dir to at most 22 characters (the default is /run/kuasar)');
  const listen = socketPathsCheck(parseConfig({ kinds: { wasm: { listen: `/${'l'.repeat(110)}` } } }), 'wasm');
  assert.equal(listen.status, 'fail');
  assert.match(listen.fix ?? '', /set \[kinds\.wasm\] listen to a shorter path/);
});

test("the admin socket: <state_dir>/admin.sock by default, admin_socket when set, which must fit a socket's path", () => {
  const byDefault = adminSocketCheck(parseConfig({ state_dir: '/run/k' }));
  assert.deepEqual([byDefault.status, byDefault.finding], ['ok', '/run/k/admin.sock has 17 of 107 characters']);
  const long = adminSocketCheck(parseConfig({ admin_socket: `/${'a'.repeat(107)}` }));
  assert.equal(long.status, 'fail');
  assert.match(long.finding, /has 108 characters/);
  assert.equal(long.fix, 'set admin_socket to a shorter path');
});

test('cgroups: the three layouts are told apart; a missing controller is a warning, no cgroups a failure', () => {
  const v2 = { version: 2 as const, mountPoint: '/sys/fs/cgroup', root: '/', controllers: [] };
  const unified = describeCgroups({ mode: 'unified', hierarchies: [v2] }, ['cpuset', 'cpu', 'io', 'memory', 'pids']);
  assert.deepEqual([unified.status, unified.finding], ['ok', 'v2 (unified) at /sys/fs/cgroup; cpu, memory, pids controllers']);
  const v1 = (controllers: string[], mountPoint: string) => ({ version: 1 as const, mountPoint, root: '/', controllers });
  const hybrid = describeCgroups(
    {
      mode: 'hybrid',
      hierarchies: [
        v1(['cpu', 'cpuacct'], '/sys/fs/cgroup/cpu'),
        v1(['memory'], '/sys/fs/cgroup/memory'),
        v1(['pids'], '/sys/fs/cgroup/pids'),
        { ...v2, mountPoint: '/sys/fs/cgroup/unified' },
      ],
    },
    [],
  );
  assert.equal(hybrid.status, 'ok');
  assert.match(hybrid.finding, /^hybrid: v1 controllers, an empty v2 tree at \/sys\/fs\/cgroup\/unified/);
  const legacy = describeCgroups({ mode: 'legacy', hierarchies: [v1(['cpu'], '/sys/fs/cgroup/cpu')] }, []);
  assert.equal(legacy.status, 'warn');
  assert.match(legacy.finding, /^v1 \(legacy\); no memory, pids controller/);
  assert.equal(describeCgroups({ mode: 'unified', hierarchies: [] }, []).status, 'fail');
});

test("containerd's configuration: version 3 with each kind's proxy plugin at its socket and its CRI handler", () => {
  const doc = {
    version: 3,
    proxy_plugins: {
      'kuasar-runc': { type: 'sandbox', address: '/run/kuasar/runc.sock' },
      'kuasar-vmm': { type: 'sandbox', address: '/elsewhere.sock' },
    },
    plugins: {
      'io.containerd.cri.v1.runtime': {
        restrict_oom_score_adj: true,
        containerd: { runtimes: { 'kuasar-runc': { sandboxer: 'kuasar-runc' }, 'kuasar-vmm': { sandboxer: 'kuasar-vmm' } } },
      },
    },
  };
  const config: ContainerdConfig = { path: '/etc/containerd/config.toml', version: 3, doc };
  assert.equal(containerdConfigCheck(config).status, 'ok');
  assert.equal(restrictsOomScoreAdj(config), true);
  assert.equal(criHandlerCheck(config, 'runc', '/run/kuasar/runc.sock').status, 'ok');
  const moved = criHandlerCheck(config, 'vmm', '/run/kuasar/vmm.sock');
  assert.equal(moved.status, 'warn');
  assert.match(moved.finding, /is not type "sandbox" at \/run\/kuasar\/vmm\.sock .*address "\/elsewhere\.sock"/);
  const missing = criHandlerCheck(config, 'wasm', '/run/kuasar/wasm.sock');
  assert.match(missing.finding, /no \[proxy_plugins\.'kuasar-wasm'\]; no CRI runtime 'kuasar-wasm'/);
  assert.match(missing.fix ?? '', /kuasar config containerd/);

  const v2: ContainerdConfig = { path: '/etc/containerd/config.toml', version: 2, doc: { version: 2 } };
  assert.equal(containerdConfigCheck(v2).status, 'warn');
  assert.match(containerdConfigCheck(v2).fix ?? '', /containerd config migrate/);
  assert.equal(criHandlerCheck(v2, 'runc', '/run/kuasar/runc.sock').status, 'skipped');
  assert.equal(restrictsOomScoreAdj(v2), false);
  assert.equal(restrictsOomScoreAdj({ path: '/x', error: 'cannot read it: ENOENT', doc: {} }), undefined);
});

test('the report: checks grouped under the host and each kind, a fix under each failure and warning; JSON with the exit status', () => {
  const r = report([
    ['runc', 'auto', [OK]],
    ['vmm', true, [OK, warn('accelerator', 'TCG', 'get KVM'), FAILED]],
  ]);
  const text = formatReport(r);
  assert.match(text, /^host\n {2}ok +root +root\n/);
  assert.match(text, /\nrunc: can run here; enabled = "auto": served\n/);
  assert.match(text, /\nvmm: cannot run here; enabled = true: kuasard refuses to start\n/);
  assert.match(text, /warn +accelerator +TCG\n +fix: get KVM\n {2}fail +tool +missing\n +fix: install it\n/);
  assert.match(text, /\nkuasard would refuse to start: vmm is enabled = true/);
  const json = JSON.parse(reportJson(r)) as { exitStatus: number; served: string[]; kinds: { name: string; canRun: boolean }[] };
  assert.equal(json.exitStatus, 1);
  assert.deepEqual(json.served, ['runc']);
  assert.deepEqual(
    json.kinds.map((k) => [k.name, k.canRun]),
    [
      ['runc', true],
      ['vmm', false],
    ],
  );
});
