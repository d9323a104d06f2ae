import assert from 'node:assert/strict';
import { chmod, mkdtemp, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { fakeOciCliPrelude } from '../../src/devenv/fake-oci-cli.js';
import { Code, RuntimeError } from '../../src/base/errors.js';
import { parseVersion } from '../../src/oci/outputs.js';
import { codeForRuntimeMessage, crunProfile, runcLikeProfile, runcProfile } from '../../src/oci/profiles.js';
import { OciRuntime } from '../../src/oci/runtime.js';
import type { Spec } from '../../src/oci/spec.js';
import { errorsFromLog } from '../../src/oci/runtime-log.js';
import { stageLog } from '../../src/devenv/stage-log.js';

// What runc 1.1 prints for `events --stats c1` on cgroup v2, cut down; the memory limit is
// "unlimited" (2^63 rounded down to a page), a figure a JS number cannot hold exactly.
const runcStatsEvent = JSON.stringify({
  type: 'stats',
  id: 'c1',
  data: {
    cpu: { usage: { total: 40960000, kernel: 20480000, user: 20480000 }, throttling: {} },
    memory: { usage: { limit: 0, usage: 315392, failcnt: 0 }, swap: { limit: 0, failcnt: 0 }, raw: { anon: 57344, file: 0 } },
    pids: { current: 2 },
    blkio: {},
    hugetlb: {},
    intel_rdt: {},
    network_interfaces: null,
  },
}).replace('"limit":0,"usage":315392', '"limit":9223372036854771712,"usage":315392');

// A stand-in for runc: it records its arguments, then acts on the subcommand and container id.
const fakeRuntime = (dir: string): string => `${fakeOciCliPrelude(dir)}fail() {
  echo 'not json {' >> "$log"
  echo '{"level":"warning","msg":"a warning","time":"t"}' >> "$log"
  for msg in "$@"; do echo "{\\"level\\":\\"error\\",\\"msg\\":\\"$msg\\",\\"time\\":\\"t\\"}" >> "$log"; done
  echo "stderr: $1" >&2
  exit 1
}
case "$cmd:$id" in
  --version:*) printf 'runc version 1.1.5+ds1\\ncommit: 1.1.5+ds1-1\\nspec: 1.0.2-dev\\ngo: go1.19.8\\n' ;;
  *:missing) fail "container does not exist" ;;
  create:dup) fail "container with id exists: dup" ;;
  create:*) while [ "$1" != --pid-file ]; do shift; done; echo 4242 > "$2"; echo "init output" ;;
  ps:*) echo '[4242,4243]' ;;
  state:garbled) echo '{"id":"garbled","status":"sleeping"}' ;;
  state:*) printf '{"ociVersion":"1.0.2-dev","id":"%s","pid":4242,"status":"running","bundle":"/bundles/%s","rootfs":"/r","created":"2026-12-06T08:00:00Z","owner":""}\n' "$id" "$id" ;;
  events:*) printf '%s\n' '${runcStatsEvent}' ;;
  start:stuck) sleep 5 ;;
  delete:broken) fail "first problem" "second problem" "third problem" "fourth problem" ;;
  kill:*|delete:*|start:*|update:*|pause:*|resume:*) ;;
  exec:*) while [ "$1" != --pid-file ]; do shift; done; echo 4300 > "$2" ;;
  *) echo "unexpected $cmd" >&2; exit 2 ;;
esac
`;

describe('OciRuntime against a stand-in runtime', () => {
  let dir: string;
  let runtime: OciRuntime;
  const args = async (): Promise<string[]> => (await readFile(path.join(dir, 'args'), 'utf8')).trim().split('\n');

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kuasar-oci-'));
    await writeFile(path.join(dir, 'runc'), fakeRuntime(dir));
    await chmod(path.join(dir, 'runc'), 0o755);
    // A generous time-out: a loaded machine must not turn these calls into failures.
    runtime = new OciRuntime({ binary: path.join(dir, 'runc'), root: path.join(dir, 'root'), timeoutMs: 30_000 });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates with the bundle, pid file and flags, hands over stdio, and returns the pid', async () => {
    const out = await open(path.join(dir, 'stdout'), 'w');
    const pid = await runtime.create('c1', '/bundles/c1', {
      pidFile: path.join(dir, 'c1.pid'),
      stdio: ['ignore', out.fd, 'ignore'],
      consoleSocket: '/run/console.sock',
    });
    await out.close();
    assert.equal(pid, 4242);
    const argv = await args();
    assert.deepEqual(argv.slice(0, 2), ['--root', path.join(dir, 'root')]);
    assert.equal(argv[2], '--log');
    assert.deepEqual(argv.slice(4), [
      '--log-format',
      'json',
      'create',
      '--bundle',
      '/bundles/c1',
      '--pid-file',
      path.join(dir, 'c1.pid'),
      '--console-socket',
      '/run/console.sock',
      'c1',
    ]);
    assert.equal(await readFile(path.join(dir, 'stdout'), 'utf8'), 'init output\n', 'the process writes to the fd it was given');
  });

  it('parses ps', async () => {
    assert.deepEqual(await runtime.ps('c1'), [4242, 4243]);
    assert.deepEqual((await args()).slice(-4), ['ps', '--format', 'json', 'c1']);
  });

  it('passes kill, delete and exec flags', async () => {
    await runtime.kill('c1', 'SIGTERM', { all: true });
    assert.deepEqual((await args()).slice(-4), ['kill', '--all', 'c1', 'SIGTERM']);
    await runtime.kill('c1', 9);
    assert.deepEqual((await args()).slice(-3), ['kill', 'c1', '9']);
    await runtime.delete('c1', { force: true });
    assert.deepEqual((await args()).slice(-3), ['delete', '--force', 'c1']);
    const pid = await runtime.exec('c1', { pidFile: path.join(dir, 'e.pid'), processFile: '/b/p.json' });
    assert.equal(pid, 4300);
    assert.deepEqual((await args()).slice(-7), ['exec', '--detach', '--pid-file', path.join(dir, 'e.pid'), '--process', '/b/p.json', 'c1']);
  });

  it('passes update, pause and resume', async () => {
    await runtime.update('c1', '/b/resources.json');
    assert.deepEqual((await args()).slice(-4), ['update', '--resources', '/b/resources.json', 'c1']);
    await runtime.pause('c1');
    assert.deepEqual((await args()).slice(-2), ['pause', 'c1']);
    await runtime.resume('c1');
    assert.deepEqual((await args()).slice(-2), ['resume', 'c1']);
  });

  it('reports a missing container as NotFound, naming the operation and id', async () => {
    await assert.rejects(runtime.start('missing'), (err: unknown) => {
      assert.ok(err instanceof RuntimeError);
      assert.equal(err.code, Code.NotFound);
      assert.equal(err.message, 'runc start missing: container does not exist');
      return true;
    });
    await assert.rejects(runtime.create('dup', '/b', { pidFile: path.join(dir, 'd.pid') }), { code: Code.AlreadyExists });
  });

  it('keeps the last error lines of the log', async () => {
    await assert.rejects(runtime.delete('broken'), {
      code: Code.Internal,
      message: 'runc delete broken: second problem; third problem; fourth problem',
    });
  });

  it('kills a command that hangs', async () => {
    const impatient = new OciRuntime({ binary: path.join(dir, 'runc'), root: path.join(dir, 'root'), timeoutMs: 300 });
    await assert.rejects(impatient.start('stuck'), { code: Code.DeadlineExceeded, message: /runc start stuck: timed out after 300 ms/ });
  });

  it('reports a missing binary', async () => {
    const missing = new OciRuntime({ binary: path.join(dir, 'no-such-runc'), root: path.join(dir, 'root') });
    await assert.rejects(missing.start('c1'), { code: Code.Internal, message: /no-such-runc start c1: spawn .*ENOENT/ });
  });

  it('reads the version', async () => {
    assert.deepEqual(await runtime.version(), { name: 'runc', version: '1.1.5+ds1', spec: '1.0.2-dev', commit: '1.1.5+ds1-1' });
  });

  it('gives the global arguments after --root and before --log, to every command but --version', async () => {
    const configured = new OciRuntime({
      binary: path.join(dir, 'runc'),
      root: path.join(dir, 'root'),
      globalArgs: ['--systemd-cgroup', 'false'],
      timeoutMs: 30_000,
    });
    await configured.start('c1');
    const argv = await args();
    assert.deepEqual(argv.slice(0, 4), ['--root', path.join(dir, 'root'), '--systemd-cgroup', 'false']);
    assert.equal(argv[4], '--log');
    assert.deepEqual(argv.slice(6), ['--log-format', 'json', 'start', 'c1']);
    await configured.version();
    assert.deepEqual(await args(), ['--version']);
  });

  it('parses state', async () => {
    assert.deepEqual(await runtime.state('c1'), { id: 'c1', status: 'running', pid: 4242, bundle: '/bundles/c1', annotations: {} });
    assert.deepEqual((await args()).slice(-2), ['state', 'c1']);
    await assert.rejects(runtime.state('garbled'), { code: Code.Internal, message: /unrecognised runtime state output/ });
  });

  it('reads one stats sample with 64-bit figures intact', async () => {
    const stats = await runtime.stats('c1');
    assert.deepEqual((await args()).slice(-3), ['events', '--stats', 'c1']);
    assert.deepEqual(stats.cpu.usage, { total: 40960000n, kernel: 20480000n, user: 20480000n, perCpu: [] });
    assert.deepEqual(stats.memory.usage, { limit: 9223372036854771712n, usage: 315392n, max: 0n, failcnt: 0n });
    assert.deepEqual(stats.memory.raw, { anon: 57344n, file: 0n });
    assert.deepEqual(stats.pids, { current: 2n, limit: 0n });
    assert.deepEqual(stats.networkInterfaces, []);
  });

  it('has no wait command for runc', async () => {
    await assert.rejects(runtime.wait('c1'), { code: Code.Unimplemented, message: 'runc wait c1: runc has no wait command' });
  });

  it('logs each command as stage oci.<command> when given a logger, failures too', async () => {
    const { log, stages } = stageLog();
    const pidFile = path.join(dir, 'staged.pid');
    await runtime.create('c1', '/b', { pidFile, log });
    await runtime.start('c1', { log });
    await runtime.exec('c1', { pidFile, processFile: '/b/p.json', log });
    await runtime.update('c1', '/b/r.json', { log });
    await runtime.pause('c1', { log });
    await runtime.resume('c1', { log });
    await runtime.kill('c1', 9, { all: true, log });
    await runtime.delete('c1', { force: true, log });
    await assert.rejects(runtime.start('missing', { log }), { code: Code.NotFound });
    await runtime.start('c1');
    assert.deepEqual(stages(), [
      'oci.create',
      'oci.start',
      'oci.exec',
      'oci.update',
      'oci.pause',
      'oci.resume',
      'oci.kill',
      'oci.delete',
      'oci.start',
    ]);
  });

  it('leaves no log file behind', async () => {
    assert.deepEqual(await readdir(runtime.logDir), []);
  });
});

describe('runtime output parsing', () => {
  it('maps runtime messages to codes', () => {
    assert.equal(codeForRuntimeMessage('container does not exist'), Code.NotFound);
    assert.equal(codeForRuntimeMessage('container not running'), Code.NotFound);
    assert.equal(codeForRuntimeMessage('cannot start an already running container'), Code.FailedPrecondition);
    assert.equal(codeForRuntimeMessage('unable to apply cgroup configuration'), Code.Internal);
    const missing = 'exec failed: unable to start container process: exec: "nope": executable file not found in $PATH';
    assert.equal(codeForRuntimeMessage(missing), Code.InvalidArgument);
  });

  it("maps crun 1.8's own messages to codes, and runc's as runc's", () => {
    const code = (message: string) => codeForRuntimeMessage(message, crunProfile);
    assert.equal(code('error opening file `/run/k/runc.oci/c1/status`: No such file or directory'), Code.NotFound);
    assert.equal(code("cannot open directory '/run/k/runc.oci/c1': No such file or directory"), Code.NotFound);
    assert.equal(code('cannot open `/run/k/runc.oci/c1/exec.fifo`: No such file or directory'), Code.FailedPrecondition);
    assert.equal(code('container `c1` already exists'), Code.AlreadyExists);
    assert.equal(code('kill container: No such process'), Code.NotFound);
    assert.equal(code('executable file `no-such-binary` not found in $PATH: No such file or directory'), Code.InvalidArgument);
    assert.equal(code('cannot open `/etc/passwd`: No such file or directory'), Code.Internal);
  });

  it('chooses the profile by the binary: crun by its name, runc otherwise', () => {
    assert.equal(runcLikeProfile('/usr/bin/crun'), crunProfile);
    assert.equal(runcLikeProfile('crun'), crunProfile);
    assert.equal(runcLikeProfile('/opt/runc-wrapper'), runcProfile);
  });

  it('writes the spec version crun 1.8 accepts, and leaves the spec as it is for runc', () => {
    const spec: Spec = { ociVersion: '1.2.1', process: { user: { uid: 0, gid: 0 }, args: ['sh'], cwd: '/' }, root: { path: 'rootfs' } };
    const crun = new OciRuntime({ profile: crunProfile, root: '/nonexistent' });
    assert.deepEqual(crun.specForRuntime(spec), { ...spec, ociVersion: '1.0.2' });
    assert.equal(spec.ociVersion, '1.2.1');
    assert.equal(new OciRuntime({ root: '/nonexistent' }).specForRuntime(spec), spec);
  });

  it('keeps only error-level log messages', () => {
    const log = ['{"level":"info","msg":"a"}', 'garbage', '{"level":"error","msg":"b"}', '', '{"level":"fatal","msg":"c"}'].join('\n');
    assert.deepEqual(errorsFromLog(log), ['b', 'c']);
  });

  it('parses crun’s version output too', () => {
    assert.deepEqual(parseVersion('crun version 1.8.1\ncommit: f8a096\nrundir: /run/crun\nspec: 1.0.0\n+SYSTEMD +SELINUX'), {
      name: 'crun',
      version: '1.8.1',
      spec: '1.0.0',
      commit: 'f8a096',
    });
    assert.throws(() => parseVersion('weird'), /unrecognised runtime version output/);
  });
});
