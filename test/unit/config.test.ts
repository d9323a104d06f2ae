import assert from 'node:assert/strict';
import { test } from 'node:test';
import { enabledKinds, parseConfig } from '../../src/config/config.js';
import { containerdConfigSnippet } from '../../src/config/containerd.js';
import { Code, RuntimeError } from '../../src/base/errors.js';

const rejects = (doc: unknown, pattern: RegExp) =>
  assert.throws(
    () => parseConfig(doc),
    (err: unknown) => err instanceof RuntimeError && err.code === Code.InvalidArgument && pattern.test(err.message),
  );

test('an empty configuration takes the defaults', () => {
  const config = parseConfig({});
  assert.equal(config.state_dir, '/run/kuasar');
  assert.equal(config.log_level, 'info');
  assert.equal(config.containerd.ttrpc_address, '/run/containerd/containerd.sock.ttrpc');
  assert.equal(config.kinds.runc.oci_runtime, 'auto');
  // Every kind is "auto": served where its checks pass (src/doctor).
  assert.deepEqual(
    enabledKinds(config).map((k) => [k.name, k.enabled, k.listen]),
    [
      ['runc', 'auto', '/run/kuasar/runc.sock'],
      ['wasm', 'auto', '/run/kuasar/wasm.sock'],
      ['appkernel', 'auto', '/run/kuasar/appkernel.sock'],
      ['vmm', 'auto', '/run/kuasar/vmm.sock'],
    ],
  );
});

test('enabled is "auto", true or false', () => {
  const config = parseConfig({ kinds: { runc: { enabled: true }, wasm: { enabled: 'auto' }, vmm: { enabled: false } } });
  assert.deepEqual(
    enabledKinds(config).map((k) => [k.name, k.enabled]),
    [
      ['runc', true],
      ['wasm', 'auto'],
      ['appkernel', 'auto'],
    ],
  );
  rejects({ kinds: { runc: { enabled: 'yes' } } }, /kinds\.runc\.enabled/);
  rejects({ kinds: { vmm: { enabled: 1 } } }, /kinds\.vmm\.enabled/);
});

test('unknown keys are errors that name the key', () => {
  rejects({ stat_dir: '/x' }, /stat_dir/);
  rejects({ kinds: { runc: { oci_runtim: 'crun' } } }, /kinds\.runc.*oci_runtim/);
  rejects({ kinds: { quark: {} } }, /kinds.*quark/);
});

test('bad values are errors that name the key', () => {
  rejects({ state_dir: 'relative/dir' }, /state_dir: must be an absolute path/);
  rejects({ log_level: 'loud' }, /log_level/);
  rejects({ kinds: { runc: { listen: 'sock' } } }, /kinds\.runc\.listen/);
  rejects({ kinds: { runc: { io_type: 'pipes' } } }, /kinds\.runc\.io_type/);
});

const allOff = { runc: { enabled: false }, wasm: { enabled: false }, appkernel: { enabled: false }, vmm: { enabled: false } };

test('a state_dir too long for task sockets is accepted here: its socket-paths check fails (test/unit/doctor.test.ts)', () => {
  assert.equal(parseConfig({ state_dir: `/${'x'.repeat(40)}` }).state_dir.length, 41);
});

test('disabled kinds are not served and --kind must name a known kind', () => {
  const config = parseConfig({ kinds: allOff });
  assert.deepEqual(enabledKinds(config), []);
  assert.throws(() => enabledKinds(parseConfig({}), 'quark'), /unknown kind "quark"/);
});

test('the containerd snippet registers a proxy plugin and a CRI handler per enabled kind', () => {
  const config = parseConfig({ state_dir: '/run/k', kinds: { runc: { listen: '/run/k/r.sock', io_type: 'streaming' } } });
  const snippet = containerdConfigSnippet(config);
  assert.match(snippet, /\[proxy_plugins\.'kuasar-runc'\]\n {2}type = "sandbox"\n {2}address = "\/run\/k\/r\.sock"/);
  assert.match(snippet, /\[plugins\.'io\.containerd\.cri\.v1\.runtime'\.containerd\.runtimes\.'kuasar-runc'\]/);
  assert.match(snippet, /sandboxer = "kuasar-runc"/);
  assert.match(snippet, /io_type = "streaming"/);
  assert.equal(containerdConfigSnippet(parseConfig({ kinds: allOff })), '');
});
