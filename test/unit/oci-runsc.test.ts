import assert from 'node:assert/strict';
import { access, chmod, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { fakeOciCliPrelude } from '../../src/devenv/fake-oci-cli.js';
import { Code } from '../../src/base/errors.js';
import { RuntimeWaitExitSource } from '../../src/oci/exit-source.js';
import { runscProfile } from '../../src/oci/profiles.js';
import { OciRuntime } from '../../src/oci/runtime.js';

// A stand-in for gVisor's runsc, printing what runsc prints (runsc/cmd, runsc/cmd/util): errors
// go to the --log file as JSON objects with no newline between them, and to stderr; Fatalf exits
// 128. `wait <id>` blocks until the test writes <dir>/exit-<id>, then prints runsc's wait result.
const fakeRunsc = (dir: string): string => `${fakeOciCliPrelude(dir)}fatal() {
  for msg in "$@"; do printf '{"msg":"%s","level":"error","time":"2026-12-06T08:00:00.1Z"}' "$msg" >> "$log"; echo "$msg" >&2; done
  exit 128
}
case "$cmd:$id" in
  --version:*) printf 'runsc version release-20261130.0\\nspec: 1.1.0-rc.1\\n' ;;
  *:missing) fatal "FetchSpec failed: loading container: file does not exist" ;;
  create:dup) fatal "creating container: container already exists" ;;
  create:*) while [ "$1" != --pid-file ]; do shift; done; echo 5150 > "$2" ;;
  start:done) fatal "starting container: cannot start container \\"done\\" in state stopped" ;;
  exec:*) fatal "executing processes for container: no such file or directory" ;;
  delete:broken) fatal "destroying container: first problem" "second problem" ;;
  state:*) printf '{\\n  "ociVersion": "1.1.0",\\n  "id": "%s",\\n  "status": "running",\\n  "pid": 5150,\\n  "bundle": "/bundles/%s"\\n}\\n' "$id" "$id" ;;
  wait:*)
    echo $$ > ${dir}/waiting-$id
    while [ ! -e ${dir}/exit-$id ]; do sleep 0.05; done
    printf '{"id":"%s","exitStatus":%s}\\n' "$id" "$(cat ${dir}/exit-$id)" ;;
  *) echo "unexpected $cmd" >&2; exit 2 ;;
esac
`;

/** Resolves once `file` exists (a hang guard bounds the test, not this loop). */
async function appears(file: string): Promise<void> {
  for (;;) {
    if (
      await access(file).then(
        () => true,
        () => false,
      )
    )
      return;
    await sleep(20);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('OciRuntime with the runsc profile, against a stand-in runsc', { timeout: 120_000 }, () => {
  let dir: string;
  let runtime: OciRuntime;
  const args = async (): Promise<string[]> => (await readFile(path.join(dir, 'args'), 'utf8')).trim().split('\n');
  const globalArgs = ['--platform', 'systrap', '--network', 'none', '--debug-log', '/var/log/runsc/'];

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kuasar-runsc-'));
    await writeFile(path.join(dir, 'runsc'), fakeRunsc(dir));
    await chmod(path.join(dir, 'runsc'), 0o755);
    // A short time-out for the commands that have one: wait must outlive it.
    runtime = new OciRuntime({
      profile: runscProfile,
      binary: path.join(dir, 'runsc'),
      root: path.join(dir, 'root'),
      globalArgs,
      timeoutMs: 300,
    });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives runsc its global arguments and returns the pid it wrote (the sandbox’s)', async () => {
    const pid = await runtime.create('c1', '/bundles/c1', { pidFile: path.join(dir, 'c1.pid') });
    assert.equal(pid, 5150);
    const argv = await args();
    assert.deepEqual(argv.slice(0, 8), ['--root', path.join(dir, 'root'), ...globalArgs]);
    assert.equal(argv[8], '--log');
    assert.deepEqual(argv.slice(10), [
      '--log-format',
      'json',
      'create',
      '--bundle',
      '/bundles/c1',
      '--pid-file',
      path.join(dir, 'c1.pid'),
      'c1',
    ]);
  });

  it('reads runsc’s error log and maps its messages with runsc’s table', async () => {
    await assert.rejects(runtime.start('missing'), {
      code: Code.NotFound,
      message: 'runsc start missing: FetchSpec failed: loading container: file does not exist',
    });
    await assert.rejects(runtime.create('dup', '/b', { pidFile: path.join(dir, 'd.pid') }), { code: Code.AlreadyExists });
    await assert.rejects(runtime.start('done'), {
      code: Code.FailedPrecondition,
      message: /cannot start container "done" in state stopped/,
    });
    await assert.rejects(runtime.exec('c1', { pidFile: path.join(dir, 'e.pid'), processFile: '/b/p.json' }), {
      code: Code.InvalidArgument,
      message: 'runsc exec c1: executing processes for container: no such file or directory',
    });
    // Two entries written back to back, with no newline between them: both are read.
    await assert.rejects(runtime.delete('broken'), {
      code: Code.Internal,
      message: 'runsc delete broken: destroying container: first problem; second problem',
    });
  });

  it('parses state and the version', async () => {
    assert.deepEqual(await runtime.state('c1'), { id: 'c1', status: 'running', pid: 5150, bundle: '/bundles/c1', annotations: {} });
    assert.deepEqual(await runtime.version(), { name: 'runsc', version: 'release-20261130.0', spec: '1.1.0-rc.1' });
  });

  /**
   * Tells the stand-in's `wait <id>` its exit: the file appears whole (renamed into place), never
   * empty, as the stand-in reads it as soon as it exists.
   */
  async function tellExit(id: string, status: number): Promise<void> {
    await writeFile(path.join(dir, `exit-${id}.tmp`), String(status));
    await rename(path.join(dir, `exit-${id}.tmp`), path.join(dir, `exit-${id}`));
  }

  it('waits past the time-out the other commands get, and tells the exit', async () => {
    const exited = runtime.wait('long');
    await appears(path.join(dir, 'waiting-long'));
    await sleep(600); // twice the commands' time-out
    await tellExit('long', 3);
    assert.equal((await exited).exitStatus, 3);
    assert.deepEqual((await args()).slice(-2), ['wait', 'long']);
  });

  it('tells exits through RuntimeWaitExitSource, one wait per container', async () => {
    const exits = new RuntimeWaitExitSource(runtime);
    const exited = exits.watch(5150, 'c1');
    assert.equal(exits.watch(5150, 'c1'), exited, 'watching twice shares one wait');
    assert.equal(exits.size, 1);
    await appears(path.join(dir, 'waiting-c1'));
    await tellExit('c1', 137);
    assert.equal((await exited).exitStatus, 137);
    assert.equal(exits.size, 0);
    await assert.rejects(exits.watch(5150, 'missing'), { code: Code.NotFound });
  });

  it('stops its waits: the wait commands are killed, with what they started', async () => {
    const exits = new RuntimeWaitExitSource(runtime);
    const first = exits.watch(5150, 'c2');
    const second = exits.watch(5150, 'c3');
    await appears(path.join(dir, 'waiting-c2'));
    await appears(path.join(dir, 'waiting-c3'));
    const waiters = await Promise.all(['c2', 'c3'].map(async (id) => Number(await readFile(path.join(dir, `waiting-${id}`), 'utf8'))));
    exits.stop();
    await Promise.all([
      assert.rejects(first, { code: Code.Cancelled, message: 'runsc wait c2: cancelled' }),
      assert.rejects(second, { code: Code.Cancelled, message: 'runsc wait c3: cancelled' }),
    ]);
    assert.equal(exits.size, 0);
    for (const pid of waiters) assert.ok(!isAlive(pid), `wait process ${pid} is gone`);
    await assert.rejects(runtime.wait('c4', { signal: AbortSignal.abort() }), { code: Code.Cancelled });
  });

  it('leaves no log file behind', async () => {
    assert.deepEqual(await readdir(runtime.logDir), []);
  });
});
