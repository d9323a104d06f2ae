import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it, test } from 'node:test';
import { pino } from 'pino';
import { Code, RuntimeError } from '../../src/base/errors.js';
import { validateId } from '../../src/base/ids.js';
import type { SandboxKind } from '../../src/kind-api/kind.js';
import { fakeTaskEndpoints, TestKind } from '../../src/devenv/test-kind.js';
import { KeyedMutex } from '../../src/base/keyed-mutex.js';
import type { PodSpec } from '../../src/base/model.js';
import { Sandboxer } from '../../src/engine/sandboxer.js';
import { writeJsonAtomicSync } from '../../src/base/state-file.js';
import { podSpec } from '../../src/devenv/pod-spec.js';

test('ids follow containerd identifier rules', () => {
  for (const ok of ['a', 'abc-123', 'a.b_c-d', 'f'.repeat(64), 'x'.repeat(76)]) assert.equal(validateId('sandbox', ok), ok);
  for (const bad of ['', '..', '../etc', 'a/b', 'a..b', '-a', 'a-', 'x'.repeat(77), 'a b', 'a\u0000b', '.hidden']) {
    assert.throws(
      () => validateId('sandbox', bad),
      (err: unknown) => err instanceof RuntimeError && err.code === Code.InvalidArgument,
      `"${bad}" should be refused`,
    );
  }
});

test('state files are replaced whole and leave no temporary file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kuasar-state-'));
  try {
    const path = join(dir, 'state.json');
    writeJsonAtomicSync(path, { phase: 'created' });
    writeJsonAtomicSync(path, { phase: 'ready', n: 2 });
    assert.deepEqual(JSON.parse(await readFile(path, 'utf8')), { phase: 'ready', n: 2 });
    assert.deepEqual(await readdir(dir), ['state.json']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('the keyed mutex runs work for one key in order and other keys in parallel', async () => {
  const mutex = new KeyedMutex();
  const order: string[] = [];
  let releaseFirst!: () => void;
  const first = mutex.run('a', async () => {
    await new Promise<void>((resolve) => (releaseFirst = resolve));
    order.push('a1');
  });
  const second = mutex.run('a', async () => void order.push('a2'));
  await mutex.run('b', async () => void order.push('b1'));
  releaseFirst();
  await Promise.all([first, second]);
  assert.deepEqual(order, ['b1', 'a1', 'a2']);
  // A failure does not block the work queued behind it.
  await assert.rejects(
    mutex.run('c', async () => Promise.reject(new Error('boom'))),
    /boom/,
  );
  assert.equal(await mutex.run('c', async () => 'after'), 'after');
});

// ---- recovery of the sandboxes an earlier run left ---------------------------------------------

const POD: PodSpec = podSpec();

/** A kind that keeps nothing; `failRecover` names sandboxes whose resources are "gone" after a restart. */
function standInKind(...failRecover: string[]) {
  const kind = new TestKind();
  if (failRecover.length > 0) kind.fail('restoreSandbox', ...failRecover);
  /** The sandboxes whose resources the kind was asked to release. */
  const destroyed = () => kind.calls.filter((call) => /^destroy(Lost)? /.test(call)).map((call) => call.split(' ')[1]);
  return { kind, destroyed };
}

describe('Sandboxer recovery after a crash', () => {
  let stateDir: string;
  const silent = pino({ level: 'silent' });
  const sandboxer = (kind: SandboxKind) => new Sandboxer(kind, stateDir, { publish: () => undefined }, fakeTaskEndpoints(), silent);
  const dirOf = (id: string) => join(stateDir, 'fake', id);
  const isCode = (code: Code) => (err: unknown) => err instanceof RuntimeError && err.code === code;

  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'kuasar-recover-'));
  });
  afterEach(async () => {
    await rm(stateDir, { recursive: true, force: true });
  });

  /** Two started sandboxes, `good` and `bad`, left by an earlier run. */
  async function earlierRun(): Promise<void> {
    const first = sandboxer(standInKind().kind);
    await first.init();
    for (const id of ['good', 'bad']) {
      await first.create({ id, namespace: 'k8s.io', netnsPath: '', pod: POD });
      await first.start(id);
      // A start is saved just after its answer: the earlier run died after that.
      await first.get(id).saved();
    }
  }

  it('serves the sandboxes with a usable state and reports one with a corrupt state file not ready, with the reason', async () => {
    await earlierRun();
    const garbage = Buffer.from([0x7b, 0x22, 0xff, 0x00, 0x13]);
    await writeFile(join(dirOf('bad'), 'state.json'), garbage);
    const { kind, destroyed } = standInKind();
    const next = sandboxer(kind);
    await next.init();

    assert.equal(next.status('good').ready, true);
    const bad = next.status('bad');
    assert.deepEqual([bad.ready, bad.phase], [false, 'stopped']);
    assert.match(bad.reason, /state of sandbox bad is unusable: not JSON/);
    assert.equal((await next.wait('bad')).exitStatus, 255, 'Wait is answered');
    assert.deepEqual(await readFile(join(dirOf('bad'), 'state.json')), garbage, 'the file is left as it was until Shutdown');
    await assert.rejects(next.start('bad'), isCode(Code.FailedPrecondition));

    await next.stop('bad', 0);
    await next.shutdown('bad');
    assert.deepEqual(destroyed(), ['bad'], 'the kind released what the pod holds');
    assert.equal(existsSync(dirOf('bad')), false);
    assert.throws(() => next.get('bad'), isCode(Code.NotFound));
    assert.equal(next.status('good').ready, true, 'the others are still served');
  });

  it('refuses a state file of the wrong shape, naming the field', async () => {
    const cases: [string, (record: Record<string, unknown>) => void, RegExp][] = [
      [
        'an id that would leave the sandbox directory',
        (r) => {
          r['containers'] = [{ ...CONTAINER, id: '../../etc' }];
        },
        /containers\.0\.id: not a valid identifier/,
      ],
      ['a missing field', (r) => void delete r['pod'], /pod: /],
      [
        'a wrong type',
        (r) => {
          r['pid'] = '12';
        },
        /pid: /,
      ],
      [
        'a stopped container without its exit',
        (r) => {
          r['containers'] = [{ ...CONTAINER, status: 'stopped' }];
        },
        /containers\.0: a stopped process needs its exit/,
      ],
      [
        "another sandbox's record",
        (r) => {
          r['id'] = 'other';
        },
        /it names sandbox "other"/,
      ],
      [
        'a record of another kind',
        (r) => {
          r['kind'] = 'vmm';
        },
        /it is of kind "vmm", not fake/,
      ],
      [
        'a bad time',
        (r) => {
          r['createdAt'] = 'yesterday';
        },
        /createdAt: /,
      ],
    ];
    for (const [what, damage, reason] of cases) {
      await rm(stateDir, { recursive: true, force: true });
      await earlierRun();
      const path = join(dirOf('bad'), 'state.json');
      const record = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
      damage(record);
      await writeFile(path, JSON.stringify(record));
      const next = sandboxer(standInKind().kind);
      await next.init();
      assert.equal(next.status('bad').ready, false, what);
      assert.match(next.status('bad').reason, reason, what);
      assert.equal(next.status('good').ready, true, what);
    }
  });

  it('releases at once a sandbox whose Create or Start the daemon died in: containerd has forgotten it', async () => {
    const first = sandboxer(standInKind().kind);
    await first.init();
    await first.create({ id: 'created', namespace: 'k8s.io', netnsPath: '', pod: POD });
    await mkdir(dirOf('no-state'), { mode: 0o700 });
    const { kind, destroyed } = standInKind();
    const next = sandboxer(kind);
    await next.init();
    assert.deepEqual(destroyed().sort(), ['created', 'no-state']);
    for (const id of ['created', 'no-state']) {
      assert.equal(existsSync(dirOf(id)), false, id);
      assert.throws(() => next.get(id), isCode(Code.NotFound));
    }
  });

  it('reports a sandbox whose resources the kind finds gone not ready, and still shuts it down', async () => {
    await earlierRun();
    const { kind, destroyed } = standInKind('bad');
    const next = sandboxer(kind);
    await next.init();
    assert.match(next.status('bad').reason, /restoreSandbox bad: injected failure/);
    assert.equal(next.status('bad').address, 'fake://bad', 'its task socket is served: containerd deletes its containers there');
    assert.equal((await next.wait('bad')).exitStatus, 255);
    await next.shutdown('bad');
    assert.deepEqual(destroyed(), ['bad']);
  });

  it('releases a sandbox whose Start fails: containerd forgets it without a Shutdown', async () => {
    const { kind, destroyed } = standInKind();
    kind.fail('start');
    const sandboxes = sandboxer(kind);
    await sandboxes.init();
    await sandboxes.create({ id: 'pod', namespace: 'k8s.io', netnsPath: '', pod: POD });
    await assert.rejects(sandboxes.start('pod'), /start pod: injected failure/);
    assert.deepEqual(destroyed(), ['pod']);
    assert.equal(existsSync(dirOf('pod')), false);
    assert.throws(() => sandboxes.get('pod'), isCode(Code.NotFound));
  });

  it('answers Wait for a sandbox saved stopped without its exit (the daemon died inside Shutdown)', async () => {
    await earlierRun();
    const path = join(dirOf('bad'), 'state.json');
    const record = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
    await writeFile(path, JSON.stringify({ ...record, phase: 'stopped', exit: null }));
    const next = sandboxer(standInKind().kind);
    await next.init();
    assert.equal((await next.wait('bad')).exitStatus, 255);
    assert.equal(next.status('bad').reason, '', 'nothing is wrong with it: it is stopped');
  });
});

const CONTAINER = {
  id: 'c1',
  bundle: '/bundle',
  rootfs: [],
  stdio: { stdin: '', stdout: '', stderr: '', terminal: false },
  pid: 10,
  status: 'running',
  exit: null,
  kindState: null,
  execs: [],
};
