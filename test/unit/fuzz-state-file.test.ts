// Property-based tests of the state-file reader: whatever bytes or JSON a state.json holds, the
// reader gives back a whole record or refuses with FailedPrecondition and the reason, never
// another error and never a record missing what core relies on; and a Sandboxer that finds such
// a file at start keeps serving: the sandbox is recovered, released, or reported not ready.
// A failure prints fast-check's seed and path: FUZZ_SEED=<seed> FUZZ_PATH=<path> replays it.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { pino } from 'pino';
import { Code, RuntimeError } from '../../src/base/errors.js';
import { isValidId } from '../../src/base/ids.js';
import { fakeTaskEndpoints, TestKind } from '../../src/devenv/test-kind.js';
import type { SandboxRecord } from '../../src/base/model.js';
import { parseSandboxRecord } from '../../src/engine/record-schema.js';
import { Sandboxer } from '../../src/engine/sandboxer.js';
import { fuzzParameters } from '../../src/devenv/fuzz.js';
import { podSpec } from '../../src/devenv/pod-spec.js';

const ID = 'pod-1';
const KIND = 'fake';
const EXIT = { exitStatus: 0, exitedAt: '2026-01-02T03:04:05.678Z' };
const STDIO = { stdin: '', stdout: '/fifo/out', stderr: '/fifo/err', terminal: false };

/** A record as the daemon writes it, with a container of each kind of life and an exec. */
const VALID: SandboxRecord = {
  id: ID,
  kind: KIND,
  namespace: 'k8s.io',
  netnsPath: '/var/run/netns/cni-1',
  pod: podSpec({
    dns: { servers: ['10.0.0.10'], searches: ['default.svc'], options: ['ndots:5'] },
    pidMode: 'pod',
    cgroupParent: '/kubepods/pod-1',
    sysctls: { 'net.ipv4.ip_forward': '1' },
    labels: { app: 'web' },
  }),

  phase: 'ready',
  createdAt: '2026-01-02T03:04:05.678Z',
  startedAt: '2026-01-02T03:04:06.000Z',
  exit: null,
  pid: 4321,
  taskAddress: 'ttrpc+unix:///run/kuasar/fake/pod-1/task.sock',
  kindState: { version: 1, data: { ipcPath: '/run/kuasar/fake/pod-1/ns/ipc', utsPath: null } },
  containers: [
    {
      id: 'c1',
      bundle: '/run/containerd/c1',
      rootfs: [{ type: 'overlay', source: 'overlay', target: '', options: ['lowerdir=/a', 'upperdir=/b'] }],
      stdio: STDIO,
      pid: 100,
      status: 'running',
      exit: null,
      kindState: { version: 1, data: { initStartTime: '12345' } },
      execs: [{ id: 'e1', spec: { args: ['sh'] }, stdio: STDIO, pid: 101, status: 'stopped', exit: EXIT, kindState: null }],
    },
    {
      id: 'c2',
      bundle: '/run/containerd/c2',
      rootfs: [],
      stdio: STDIO,
      pid: 102,
      status: 'stopped',
      exit: EXIT,
      kindState: null,
      execs: [],
    },
  ],
};

/** Every path (keys and array indexes) inside a JSON value. */
function pathsOf(value: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (value === null || typeof value !== 'object') return [prefix];
  const children = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : Object.entries(value);
  return [prefix, ...children.flatMap(([key, child]) => pathsOf(child, [...prefix, key]))];
}

const ALL_PATHS = pathsOf(VALID).filter((p) => p.length > 0);

/** The valid record with the value at one path replaced by `value`, or removed (undefined). */
function damaged(path: readonly (string | number)[], value: unknown): unknown {
  const copy = structuredClone(VALID) as unknown as Record<string | number, unknown>;
  let parent = copy;
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, unknown>;
  const last = path.at(-1)!;
  if (value === undefined) {
    if (Array.isArray(parent)) parent.splice(last as number, 1);
    else delete parent[last];
  } else {
    parent[last] = value;
  }
  return copy;
}

/** State files: arbitrary bytes, arbitrary JSON, and (most) the daemon's own record with one or two values damaged. */
const stateText: fc.Arbitrary<string> = fc.oneof(
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes).toString('utf8')) },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((value) => JSON.stringify(value)) },
  {
    weight: 4,
    arbitrary: fc
      .tuple(
        fc.constantFrom(...ALL_PATHS),
        fc.option(fc.oneof(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom('', '..', '../x', 'stopped', 'created', -1, 2 ** 53)), {
          nil: undefined,
        }),
      )
      .map(([path, value]) => JSON.stringify(damaged(path, value))),
  },
  { weight: 1, arbitrary: fc.nat({ max: JSON.stringify(VALID).length }).map((n) => JSON.stringify(VALID).slice(0, n)) },
);

/** What core relies on in a loaded record, checked without the schema that loaded it. */
function assertWhole(record: SandboxRecord): void {
  assert.equal(record.id, ID);
  assert.equal(record.kind, KIND);
  assert.ok(['created', 'ready', 'stopped'].includes(record.phase));
  assert.ok(!Number.isNaN(Date.parse(record.createdAt)));
  assert.ok(Number.isInteger(record.pid) && record.pid >= 0);
  assert.equal(typeof record.taskAddress, 'string');
  assert.ok(['pod', 'container', 'node'].includes(record.pod.pidMode));
  assert.equal(typeof record.pod.hostNetwork, 'boolean');
  assert.ok(record.kindState !== undefined);
  const processes = [...record.containers, ...record.containers.flatMap((c) => c.execs)];
  for (const p of processes) {
    assert.ok(isValidId(p.id), `id ${JSON.stringify(p.id)}`);
    assert.equal(p.status === 'stopped', p.exit !== null, 'a stopped process knows its exit');
    if (p.exit) assert.ok(Number.isInteger(p.exit.exitStatus) && !Number.isNaN(Date.parse(p.exit.exitedAt)));
  }
  for (const c of record.containers) assert.ok(Array.isArray(c.rootfs) && typeof c.stdio.terminal === 'boolean');
  assert.equal(new Set(record.containers.map((c) => c.id)).size, record.containers.length);
}

describe('state-file reader under arbitrary input', () => {
  it('loads a whole record or refuses with FailedPrecondition and the reason', () => {
    assert.deepEqual(parseSandboxRecord(JSON.stringify(VALID), { id: ID, kind: KIND }), VALID, "the daemon's own record loads as written");
    fc.assert(
      fc.property(stateText, (text) => {
        let record: SandboxRecord;
        try {
          record = parseSandboxRecord(text, { id: ID, kind: KIND });
        } catch (err) {
          assert.ok(err instanceof RuntimeError && err.code === Code.FailedPrecondition, `refused with ${String(err)}`);
          assert.match(err.message, /^state of sandbox pod-1 is unusable: ./);
          return;
        }
        assertWhole(record);
      }),
      fuzzParameters(2000),
    );
  });

  it('never stops a Sandboxer from starting: the sandbox is served, released, or reported not ready with the reason', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'kuasar-fuzz-state-'));
    // Containers of the fuzzed records are followed again, and killed and released by Shutdown.
    const kind = new TestKind({ name: KIND });
    const endpoints = fakeTaskEndpoints();
    let runs = 0;
    try {
      await fc.assert(
        fc.asyncProperty(stateText, async (text) => {
          // A state directory per run: a save still under way from the run before must not land in this one.
          const runDir = join(stateDir, String(++runs));
          const dir = join(runDir, KIND, ID);
          await mkdir(dir, { recursive: true });
          await writeFile(join(dir, 'state.json'), text);
          const sandboxer = new Sandboxer(kind, runDir, { publish: () => undefined }, endpoints, pino({ level: 'silent' }));
          await sandboxer.init();
          const found = sandboxer.list().find((s) => s.id === ID);
          if (!found) return; // released at once: it never started
          const status = sandboxer.status(ID);
          if (status.reason) {
            assert.equal(status.ready, false);
            assert.equal((await sandboxer.wait(ID)).exitStatus, 255);
          }
          await sandboxer.shutdown(ID);
          assert.equal(sandboxer.list().length, 0);
        }),
        fuzzParameters(150),
      );
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});
