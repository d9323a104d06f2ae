// The registry of kinds: every registration is complete and consistent, everything that lists
// kinds takes them from it, and loading it loads no kind's own modules.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse as parseToml } from 'smol-toml';
import { BASELINE_KIND, IN_KUASARD_KIND, kindConfigsInBench } from '../../src/bench/kinds.js';
import { enabledKinds, parseConfig } from '../../src/config/config.js';
import { renderKuasardConfig, renderKuasardConfigWith } from '../../src/devenv/config.js';
import { localImageRef } from '../../src/devenv/images.js';
import { environmentPaths } from '../../src/devenv/layout.js';
import { findKind, KIND_NAMES, KINDS } from '../../src/kinds/index.js';
import { MAX_KIND_NAME_LENGTH, type KindRegistration } from '../../src/kind-api/registration.js';
import { MODULE_LOG_PRELOAD, moduleLogs, ourModules } from '../fixtures/module-log/modules.js';

const kinds: readonly KindRegistration[] = KINDS;

test('kind names are unique, short enough for task socket paths, and usable as TOML keys and directory names', () => {
  assert.equal(new Set(KIND_NAMES).size, KIND_NAMES.length);
  for (const name of KIND_NAMES) {
    assert.match(name, /^[a-z][a-z0-9]*$/);
    assert.ok(name.length <= MAX_KIND_NAME_LENGTH, `${name} is longer than ${MAX_KIND_NAME_LENGTH} characters`);
    assert.equal(findKind(name)?.name, name);
  }
  assert.equal(findKind('quark'), undefined);
});

test("each kind's table is the configuration's [kinds.<name>], with a default for every key", () => {
  const config = parseConfig({});
  assert.deepEqual(Object.keys(config.kinds), KIND_NAMES);
  for (const kind of kinds) {
    const table = kind.config.parse({});
    assert.deepEqual(config.kinds[kind.name as keyof typeof config.kinds], table);
    // Served where its checks pass: every kind owns checks (loaded only when asked).
    assert.equal(table.enabled, 'auto');
    assert.equal(typeof kind.checks, 'function');
    assert.equal(table.io_type, 'fifo');
    assert.throws(() => kind.config.parse({ no_such_key: 1 }), /no_such_key/, `${kind.name} accepts an unknown key`);
  }
});

test("each kind's workloads run images the devenv builds", () => {
  for (const kind of kinds) {
    const { hello, idle } = kind.workloads;
    for (const workload of [hello, idle]) {
      assert.match(localImageRef(workload.image), /^kuasar\.local\//);
      assert.ok(workload.command.length > 0, `${kind.name}: a workload without a command`);
    }
    assert.notEqual(idle.summary, '');
    const taskRate = kind.bench?.inKuasard?.taskRate;
    if (taskRate) assert.match(localImageRef(taskRate.image), /^kuasar\.local\//);
  }
  assert.throws(() => localImageRef('alpine'), /no local image "alpine": the environment builds busybox, pause, wasm-tests/);
});

test("the benchmark's kind-specific parts name registered kinds", () => {
  assert.equal(findKind(BASELINE_KIND.name)?.bench?.versusBaseline, true);
  assert.deepEqual(findKind(IN_KUASARD_KIND.name)?.bench?.inKuasard?.taskRate, IN_KUASARD_KIND.taskRate);
});

test("the benchmark's kuasard takes each measured kind's benchmark keys (vmm: VMs booting ten at once under TCG get 5 minutes; a warm pool below the environment's cgroup), valid for the kind's schema", () => {
  const paths = environmentPaths('/run/kdev-aaaaaa');
  // A kind not measured keeps its defaults: no warm pool booting VMs beside the runc kind's starts.
  assert.deepEqual(kindConfigsInBench('kdev-aaaaaa', []), {}, 'a default run does not measure the vmm kind');
  assert.deepEqual(kindConfigsInBench('kdev-aaaaaa', ['runc', 'wasm']), {});
  const settings = kindConfigsInBench('kdev-aaaaaa', ['runc', 'vmm']);
  assert.deepEqual(settings, {
    vmm: { boot_timeout_ms: 300_000, warm_pool: 2, warm_pool_cgroup_parent: '/kdev-aaaaaa/kuasar-vmm-warm' },
  });
  const config = parseConfig(parseToml(renderKuasardConfigWith(settings, 'auto')(paths)));
  assert.equal(config.kinds.vmm.boot_timeout_ms, 300_000);
  assert.equal(config.kinds.vmm.warm_pool, findKind('vmm')?.bench?.warmPool?.size);
  assert.equal(config.kinds.vmm.warm_pool_cgroup_parent, '/kdev-aaaaaa/kuasar-vmm-warm');
  assert.equal(config.kinds.vmm.enabled, 'auto');
  assert.equal(parseConfig(parseToml(renderKuasardConfig(paths))).kinds.vmm.boot_timeout_ms, 60_000, 'the default elsewhere');
});

test("the devenv's kuasard serves every registered kind, each on its own socket in the environment", () => {
  const paths = environmentPaths('/run/kdev-aaaaaa');
  const config = parseConfig(parseToml(renderKuasardConfig(paths)));
  const served = enabledKinds(config);
  assert.deepEqual(
    served.map((k) => k.name),
    KIND_NAMES,
  );
  for (const { listen } of served) assert.ok(listen.startsWith('/run/kdev-aaaaaa/'), listen);
  assert.equal(new Set(served.map((k) => k.listen)).size, served.length);
});

test('loading the configuration and the registry loads no module of any kind but its registration, capabilities and table', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kuasar-module-log-'));
  try {
    const dist = new URL('../../src/', import.meta.url).href;
    const script = `const { parseConfig } = await import('${dist}config/config.js'); await import('${dist}kinds/index.js'); parseConfig({});`;
    execFileSync(process.execPath, ['--import', MODULE_LOG_PRELOAD, '--input-type=module', '-e', script], {
      env: { ...process.env, MODULE_LOG_DIR: dir },
    });
    const [urls = []] = moduleLogs(dir, 'eval');
    const kindModules = ourModules(urls)
      .filter((path) => path.startsWith('kinds/'))
      .sort();
    // A registration, the capabilities it declares and the table it reads (where the kind keeps
    // that in a module of its own): data, none of the kind's working modules.
    const declared = KIND_NAMES.flatMap((name) => [`kinds/${name}/registration.js`, `kinds/${name}/capabilities.js`]);
    declared.push('kinds/vmm/config.js');
    assert.deepEqual(kindModules, ['kinds/index.js', ...declared].sort());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
