// kuasard ships lean: a real kuasard, started by the devenv with a test-only hook that records
// every module it loads (test/fixtures/module-log), serves a pod of every registered kind with the
// kind's demo workload through CRI. Afterwards it must have loaded none of the bench, the devenv,
// the CRI client or the other CLI commands, and no package that `npm ci --omit=dev` leaves out
// (vega, vega-lite), nor the bench's progress bars. Before its first pod it has loaded no CRI API
// (read at a pod's Create) and started no wasm worker thread (the warm ones wait for a first
// wasm container). kuasard runs from its compiled modules here, not its bundle (the bundle keeps
// the same dynamic imports lazy, as chunks).
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { diffHost, NO_LEAKS, snapshotHost, type HostSnapshot } from '../../src/devenv/leaks.js';
import { runPod, runToExit } from '../../src/devenv/pod-runs.js';
import { containerConfig } from '../../src/devenv/pods.js';
import { helloWorkload } from '../../src/devenv/workloads.js';
import { KIND_NAMES } from '../../src/kinds/index.js';
import { MODULE_LOG_PRELOAD, moduleLogs, ourModules, packagesOf, productionPackages } from '../fixtures/module-log/modules.js';

/** Packages only `kuasar bench` uses: the charts and the progress bars. */
const BENCH_PACKAGES = ['vega', 'vega-lite', 'cli-progress'];
/** Our folders kuasard must never load, and the one CLI module it may. */
const FOREIGN_FOLDERS = /^(bench|devenv|cri|cli)\//;
const DAEMON_ENTRY = 'cli/kuasard.js';

describe('kuasard ships lean', () => {
  let env: Environment;
  let hostBefore: HostSnapshot;
  let logDir: string;
  /** What kuasard had loaded once it served, before any pod: its module logs, by file name. */
  let atStart: Map<string, string[]>;

  before(async () => {
    hostBefore = snapshotHost();
    logDir = mkdtempSync(join(tmpdir(), 'kuasard-modules-'));
    // The daemons inherit the environment they are started with; the hook is theirs only.
    const saved = { nodeOptions: process.env['NODE_OPTIONS'], logDir: process.env['MODULE_LOG_DIR'] };
    process.env['NODE_OPTIONS'] = [saved.nodeOptions, `--import ${MODULE_LOG_PRELOAD}`].filter(Boolean).join(' ');
    process.env['MODULE_LOG_DIR'] = logDir;
    try {
      env = await startEnvironment({ kuasardModules: true });
      atStart = new Map(readdirSync(logDir).map((name) => [name, readFileSync(join(logDir, name), 'utf8').split('\n')]));
    } finally {
      for (const [key, value] of [
        ['NODE_OPTIONS', saved.nodeOptions],
        ['MODULE_LOG_DIR', saved.logDir],
      ] as const) {
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
  });

  after(async () => {
    await env?.stop();
    rmSync(logDir, { recursive: true, force: true });
    if (env) assert.deepEqual(diffHost(hostBefore, snapshotHost(), { scope: env.scope }), NO_LEAKS);
  });

  it('had loaded no CRI API and started no wasm worker before its first pod', () => {
    // The processes the devenv started: kuasard and `kuasar config containerd`; a worker thread
    // would log under its own script's name.
    const names = [...atStart.keys()];
    assert.deepEqual(
      names.filter((name) => !/^kuasard?\.js-/.test(name)),
      [],
      'no worker thread logged',
    );
    const daemonLogs = names.filter((name) => name.startsWith('kuasard.js-'));
    assert.equal(daemonLogs.length, 1, `one kuasard logged: ${names.join(', ')}`);
    const ours = ourModules(daemonLogs.flatMap((name) => atStart.get(name) ?? []));
    assert.ok(ours.includes('daemon/daemon.js'), 'the log at start is read');
    assert.deepEqual(
      ours.filter((path) => path.startsWith('api/cri/')),
      [],
    );
  });

  it("runs every registered kind's demo workload to a clean exit", async () => {
    for (const kind of KIND_NAMES) {
      const handler = env.handlers.kuasar[kind];
      assert.ok(handler, `kuasard serves ${kind}`);
      const { leaks } = await runPod(env, handler, env.podConfig({ name: `lean-${kind}` }), [env.paths.kuasarState], async (run) => {
        const { status, stdout } = await runToExit(env, run, containerConfig({ name: 'hello', ...helloWorkload(kind) }));
        assert.equal(status.exitCode, 0, `${kind}: ${stdout}`);
        assert.notEqual(stdout.trim(), '', `${kind}: the demo workload printed nothing`);
      });
      assert.deepEqual(leaks, NO_LEAKS);
    }
  });

  it('loaded no bench, devenv, CRI client or other CLI code, and no package outside the production dependencies', () => {
    const logs = moduleLogs(logDir, 'kuasard.js');
    assert.equal(logs.length, 1, 'one kuasard recorded the modules it loaded');
    const urls = logs[0] ?? [];
    const ours = ourModules(urls);
    // The record is whole: the daemon, and each kind's modules, loaded when the daemon built the kind.
    for (const expected of [DAEMON_ENTRY, 'daemon/daemon.js', ...KIND_NAMES.map((kind) => `kinds/${kind}/kind.js`)]) {
      assert.ok(ours.includes(expected), `${expected} is not among the ${ours.length} modules recorded`);
    }
    assert.deepEqual(
      ours.filter((path) => FOREIGN_FOLDERS.test(path) && path !== DAEMON_ENTRY),
      [],
    );

    const packages = packagesOf(urls);
    assert.ok(packages.includes('@grpc/grpc-js'), `packages recorded: ${packages.join(', ')}`);
    const production = productionPackages();
    assert.deepEqual(
      packages.filter((name) => !production.has(name)),
      [],
      'packages npm ci --omit=dev does not install',
    );
    assert.deepEqual(
      packages.filter((name) => BENCH_PACKAGES.includes(name)),
      [],
    );
  });
});
