// `kuasar install` and `kuasar uninstall`, run as an operator runs them, against containerd's own
// configuration files: the one Debian's containerd package ships (version 2: refused, and the
// migration the message tells of works), and `containerd config default`'s (version 3), whose
// file is given back byte for byte. Then a containerd started on the merged file (the defaults
// with root, state, sockets and the CNI directory moved into a private environment) runs pods of
// every kind kuasard serves, and uninstall is refused while one exists.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse as parseToml } from 'smol-toml';
import { loadConfig } from '../../src/config/config.js';
import { startEnvironment, type Environment } from '../../src/devenv/environment.js';
import { PAUSE_IMAGE } from '../../src/devenv/images.js';
import type { EnvironmentPaths } from '../../src/devenv/layout.js';
import { diffHost, NO_LEAKS, snapshotHost, type HostSnapshot } from '../../src/devenv/leaks.js';
import { runPod, runToExit } from '../../src/devenv/pod-runs.js';
import { containerConfig } from '../../src/devenv/pods.js';
import { helloWorkload } from '../../src/devenv/workloads.js';
import { BLOCK_BEGIN, BLOCK_END } from '../../src/install/containerd-config.js';
import { KUASARD_ENTRY, KUASARD_NODE_FLAGS } from '../../src/install/kuasard-node.js';
import { KIND_NAMES } from '../../src/kinds/index.js';

const run = promisify(execFile);
const HERE = dirname(fileURLToPath(import.meta.url));
const KUASAR = resolve(HERE, '../../src/cli/kuasar.js');
/** /etc/containerd/config.toml of Debian's containerd 2.1.9+ds1-5, as the package ships it. */
const DEBIAN_CONFIG = resolve(HERE, '../../../test/fixtures/containerd/debian-package-config.toml');

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the kuasar CLI to its end; a failure is a result, not an exception. */
function kuasar(args: readonly string[]): Promise<CliResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [KUASAR, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolveRun({ code, stdout, stderr }));
  });
}

/** The paths of one node's files, all in `dir`. */
const nodeFiles = (dir: string) => ({
  containerd: join(dir, 'containerd', 'config.toml'),
  kuasard: join(dir, 'kuasar', 'config.toml'),
  systemd: join(dir, 'systemd'),
});

const pathArgs = (files: ReturnType<typeof nodeFiles>) => [
  '--containerd-config',
  files.containerd,
  '--config',
  files.kuasard,
  '--systemd-dir',
  files.systemd,
];

async function installOk(files: ReturnType<typeof nodeFiles>): Promise<string> {
  const result = await kuasar(['install', ...pathArgs(files)]);
  assert.equal(result.code, 0, `kuasar install failed: ${result.stderr}`);
  return result.stdout;
}

const containerdDefaults = async (): Promise<string> => (await run('containerd', ['config', 'default'])).stdout;

/** Every file under the node's directory with its bytes, to tell what a run changed. */
function filesOf(files: ReturnType<typeof nodeFiles>): Record<string, string | undefined> {
  const read = (path: string) => (existsSync(path) ? readFileSync(path, 'latin1') : undefined);
  return {
    containerd: read(files.containerd),
    backup: read(`${files.containerd}.kuasar-backup`),
    kuasard: read(files.kuasard),
    unit: read(join(files.systemd, 'kuasard.service')),
  };
}

/**
 * containerd's defaults with what is host-wide moved into the environment, line by line so that
 * the file keeps containerd's own layout: root, state, the gRPC socket (the ttrpc socket follows
 * it), the CNI configuration, NRI's socket, the opt directory, pod network namespaces under the
 * state directory, and the pinned sandbox image the local one (nothing is pulled here).
 */
function defaultsMovedInto(defaults: string, paths: EnvironmentPaths): string {
  const moves: [string, string][] = [
    [`root = '/var/lib/containerd'`, `root = '${paths.containerdRoot}'`],
    [`state = '/run/containerd'`, `state = '${paths.containerdState}'`],
    [`  address = '/run/containerd/containerd.sock'`, `  address = '${paths.containerdSocket}'`],
    [`conf_dir = '/etc/cni/net.d'`, `conf_dir = '${paths.cniConfDir}'`],
    [`socket_path = '/var/run/nri/nri.sock'`, `socket_path = '${join(paths.dir, 'nri.sock')}'`],
    [`path = '/opt/containerd'`, `path = '${paths.optDir}'`],
    ['netns_mounts_under_state_dir = false', 'netns_mounts_under_state_dir = true'],
    [`sandbox = 'registry.k8s.io/pause:3.10'`, `sandbox = '${PAUSE_IMAGE}'`],
  ];
  const lines = defaults.split('\n');
  for (const [from, to] of moves) {
    const at = lines.flatMap((line, index) => (line.trim() === from.trim() && line.endsWith(from.trimStart()) ? [index] : []));
    assert.equal(
      at.length,
      1,
      `containerd's defaults have "${from.trim()}" once (containerd ${at.length === 0 ? 'changed' : 'repeats'} it)`,
    );
    const index = at[0] ?? 0;
    lines[index] = (lines[index] ?? '').replace(from.trim(), to.trim());
  }
  return lines.join('\n');
}

describe('kuasar install and uninstall on files as containerd ships them', () => {
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'kuasar-install-'));
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("refuses the file Debian's containerd package ships (version 2) with how to migrate it, writes nothing, and installs once it is migrated as told", async () => {
    const files = nodeFiles(join(dir, 'debian'));
    await run('mkdir', ['-p', dirname(files.containerd)]);
    const shipped = readFileSync(DEBIAN_CONFIG, 'utf8');
    assert.match(shipped, /^version = 2$/m);
    writeFileSync(files.containerd, shipped);

    const refused = await kuasar(['install', ...pathArgs(files)]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /is containerd configuration version 2; kuasar registers itself in version 3/);
    const command = /`(containerd --config \S+ config migrate > (\S+))`/.exec(refused.stderr);
    assert.ok(command, `the message tells how to migrate: ${refused.stderr}`);
    assert.deepEqual(filesOf(files), { containerd: shipped, backup: undefined, kuasard: undefined, unit: undefined });

    // The migration, exactly as the message words it.
    const [, migrate, target] = command;
    await run('sh', ['-c', migrate ?? '']);
    await run('mv', [target ?? '', files.containerd]);
    const migrated = readFileSync(files.containerd, 'utf8');
    assert.match(migrated, /^version = 3$/m);
    await installOk(files);
    assert.ok(readFileSync(files.containerd, 'utf8').startsWith(`${migrated}\n${BLOCK_BEGIN}\n`));
  });

  it("installs into `containerd config default`'s file, a second time changes no byte, and uninstall gives the file back byte for byte", async () => {
    const files = nodeFiles(join(dir, 'defaults'));
    await run('mkdir', ['-p', dirname(files.containerd)]);
    const original = await containerdDefaults();
    writeFileSync(files.containerd, original, { mode: 0o640 });

    const said = await installOk(files);
    const installed = filesOf(files);
    // The operator's file is kept whole, kuasar's block after it; the backup is the file before.
    assert.ok(installed.containerd?.startsWith(`${original}\n${BLOCK_BEGIN}\n`), 'the original text comes first, untouched');
    assert.ok(installed.containerd?.endsWith(`${BLOCK_END}\n`));
    assert.equal(installed.backup, original);
    assert.equal(statSync(files.containerd).mode & 0o777, 0o640, 'the file keeps its mode');
    const merged = parseToml(installed.containerd ?? '') as {
      proxy_plugins: Record<string, { type: string; address: string }>;
      plugins: Record<string, { containerd: { runtimes: Record<string, { sandboxer?: string; runtime_type: string }> } }>;
    };
    // kuasard's configuration was absent: install wrote the defaults, and kuasard reads it.
    const config = await loadConfig(files.kuasard);
    assert.equal(
      config.containerd.ttrpc_address,
      '/run/containerd/containerd.sock.ttrpc',
      "containerd's ttrpc socket, from its gRPC socket",
    );
    assert.deepEqual({ ...merged.proxy_plugins['kuasar-runc'] }, { type: 'sandbox', address: '/run/kuasar/runc.sock' });
    const runtimes = merged.plugins['io.containerd.cri.v1.runtime']?.containerd.runtimes ?? {};
    assert.equal(runtimes['kuasar-runc']?.sandboxer, 'kuasar-runc');
    assert.equal(runtimes['runc']?.sandboxer, 'podsandbox', "containerd's own runc handler is still there");
    assert.match(said, /systemctl restart containerd\.service/);

    // The unit: what the issue asks of it, and systemd's own parser finds nothing wrong in it.
    const unit = installed.unit ?? '';
    for (const line of [
      'Type=notify',
      'KillMode=process',
      'Restart=always',
      'WatchdogSec=30s',
      'Before=containerd.service',
      'WantedBy=multi-user.target',
    ]) {
      assert.ok(unit.split('\n').includes(line), `the unit has ${line}`);
    }
    assert.ok(
      unit.split('\n').includes(`ExecStart=${process.execPath} ${KUASARD_NODE_FLAGS.join(' ')} ${KUASARD_ENTRY} --config ${files.kuasard}`),
    );
    const verified = await run('systemd-analyze', ['verify', join(files.systemd, 'kuasard.service')]);
    assert.equal(verified.stderr, '', 'systemd-analyze verify has no complaint');

    const again = await kuasar(['install', ...pathArgs(files)]);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(filesOf(files), installed, 'a second install changes no byte');
    // The configuration install wrote turns no kind off: every kind (each "auto") has its tables.
    assert.ok(again.stdout.includes(`has kuasar's block for ${KIND_NAMES.join(', ')} already`), again.stdout);
    assert.doesNotMatch(again.stdout, /restart containerd/, 'containerd need not restart for an unchanged file');

    const removed = await kuasar(['uninstall', ...pathArgs(files)]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.deepEqual(filesOf(files), { containerd: original, backup: undefined, kuasard: installed.kuasard, unit: undefined });
    assert.equal(statSync(files.containerd).mode & 0o777, 0o640);
    assert.match(removed.stdout, /restored .* as it was before `kuasar install`/);
  });

  it('refuses a file without a version, and one that defines a kuasar handler itself, naming it', async () => {
    const files = nodeFiles(join(dir, 'conflicts'));
    await run('mkdir', ['-p', dirname(files.containerd)]);
    writeFileSync(files.containerd, '[plugins]\n');
    const unversioned = await kuasar(['install', ...pathArgs(files)]);
    assert.equal(unversioned.code, 1);
    assert.match(unversioned.stderr, /declares no `version`.*config migrate/);

    // As an operator who followed the old instructions (`kuasar config containerd >> config.toml`) has it.
    const printed = await kuasar(['config', 'containerd']);
    const byHand = `${await containerdDefaults()}\n${printed.stdout}`;
    writeFileSync(files.containerd, byHand);
    const taken = await kuasar(['install', ...pathArgs(files)]);
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /defines kuasar-runc(, kuasar-\w+)* outside kuasar's block/);
    assert.equal(readFileSync(files.containerd, 'utf8'), byHand);
  });
});

describe("containerd on the file `kuasar install` merged into containerd's defaults", () => {
  let env: Environment;
  let hostBefore: HostSnapshot;
  let original: string;
  let merged: string;
  let files: ReturnType<typeof nodeFiles>;

  before(async () => {
    hostBefore = snapshotHost();
    env = await startEnvironment({
      writeContainerdConfig: async (paths) => {
        files = { containerd: paths.containerdConfig, kuasard: paths.kuasardConfig, systemd: join(paths.dir, 'systemd') };
        original = defaultsMovedInto(await containerdDefaults(), paths);
        writeFileSync(files.containerd, original, { mode: 0o600 });
        await installOk(files);
        merged = readFileSync(files.containerd, 'utf8');
      },
    });
  });

  after(async () => {
    await env?.stop();
    if (env) assert.deepEqual(diffHost(hostBefore, snapshotHost(), { scope: env.scope }), NO_LEAKS);
  });

  it('registered every kind kuasard serves, at the sockets its configuration names', () => {
    assert.ok(merged.startsWith(`${original}\n${BLOCK_BEGIN}\n`));
    const doc = parseToml(merged) as { proxy_plugins: Record<string, { address: string }> };
    assert.deepEqual(Object.keys(env.kuasarSockets).sort(), [...KIND_NAMES].sort(), 'the environment enables every kind');
    for (const [kind, socket] of Object.entries(env.kuasarSockets)) {
      assert.equal(doc.proxy_plugins[`kuasar-${kind}`]?.address, socket);
    }
  });

  it("runs a pod of every enabled kind with the kind's demo workload", async () => {
    for (const kind of Object.keys(env.kuasarSockets)) {
      const handler = env.handlers.kuasar[kind] ?? '';
      const { leaks } = await runPod(env, handler, env.podConfig({ name: `installed-${kind}` }), [env.paths.kuasarState], async (pod) => {
        const { status, stdout } = await runToExit(env, pod, containerConfig({ name: 'hello', ...helloWorkload(kind) }), 120_000);
        assert.equal(status.exitCode, 0, `${kind}: ${stdout}`);
        assert.notEqual(stdout.trim(), '', `${kind}: the demo workload printed nothing`);
      });
      assert.deepEqual(leaks, NO_LEAKS, kind);
    }
  });

  it('refuses to uninstall while a pod exists; --force goes ahead; install again is the same file; without pods uninstall gives the file back', async () => {
    const { leaks } = await runPod(env, env.handlers.kuasar['runc'] ?? '', env.podConfig({ name: 'installed-held' }), [], async () => {
      const refused = await kuasar(['uninstall', ...pathArgs(files)]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /kuasard holds 1 pod\(s\) in .* \(1 runc\): stop and remove them first.*--force/);
      assert.equal(readFileSync(files.containerd, 'utf8'), merged, 'nothing changed');
      assert.ok(existsSync(join(files.systemd, 'kuasard.service')));

      const forced = await kuasar(['uninstall', '--force', ...pathArgs(files)]);
      assert.equal(forced.code, 0, forced.stderr);
      assert.match(forced.stdout, /going ahead \(--force\)/);
      assert.equal(readFileSync(files.containerd, 'utf8'), original);

      await installOk(files);
      assert.equal(readFileSync(files.containerd, 'utf8'), merged, 'installing again gives the same file');
    });
    assert.deepEqual(leaks, NO_LEAKS);

    const removed = await kuasar(['uninstall', ...pathArgs(files)]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(readFileSync(files.containerd, 'utf8'), original, 'the file as it was before install, byte for byte');
    assert.equal(existsSync(`${files.containerd}.kuasar-backup`), false);
    assert.equal(existsSync(join(files.systemd, 'kuasard.service')), false);
  });
});
