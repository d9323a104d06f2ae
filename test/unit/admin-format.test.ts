// What `kuasar ps` and `kuasar inspect` print for people, from kuasard's answers (pure).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PodSpec } from '../../src/base/model.js';
import { age, columns, containerCounts, formatInspect, formatPs } from '../../src/cli/admin-format.js';
import type { ContainerDetails, ContainerView, SandboxDetails, SandboxSummary } from '../../src/daemon/admin-api.js';

const NOW = Date.parse('2025-01-01T12:00:00.000Z');
const ID_A = `a1b2c3d4e5f6a7${'0'.repeat(50)}`;
const ID_B = `b1b2c3d4e5f6a7${'1'.repeat(50)}`;

const container = (id: string, status: ContainerView['status'], pid = 0): ContainerView => ({
  id,
  status,
  pid,
  exit: status === 'stopped' ? { exitStatus: 2, exitedAt: '2025-01-01T11:59:00.000Z' } : null,
  execs: [],
});

function summary(
  id: string,
  kind: string,
  createdAt: string,
  containers: ContainerView[],
  extra: Partial<SandboxSummary> = {},
): SandboxSummary {
  return {
    kind,
    id,
    pod: { namespace: 'default', name: `pod-${kind}`, uid: 'uid-1' },
    state: 'ready',
    reason: '',
    pid: 4242,
    createdAt,
    startedAt: createdAt,
    containers,
    ...extra,
  };
}

describe('kuasar ps and inspect output', () => {
  it('tells ages as kubectl does', () => {
    const ago = (seconds: number) => age(new Date(NOW - seconds * 1000).toISOString(), NOW);
    assert.deepEqual(
      [ago(0), ago(59), ago(60), ago(3599), ago(3600), ago(47 * 3600), ago(48 * 3600)],
      ['0s', '59s', '1m', '59m', '1h', '47h', '2d'],
    );
    assert.equal(age(new Date(NOW + 5000).toISOString(), NOW), '0s', 'a clock a little ahead is no negative age');
  });

  it('counts containers by state, running first', () => {
    assert.equal(containerCounts([]), '0');
    assert.equal(
      containerCounts([container('x', 'stopped'), container('y', 'running'), container('z', 'running')]),
      '3 (running 2, stopped 1)',
    );
  });

  it('pads columns but the last', () => {
    assert.deepEqual(
      columns([
        ['A', 'BB', 'C'],
        ['aaa', 'b', 'cccc'],
      ]),
      ['A    BB  C', 'aaa  b   cccc'],
    );
  });

  it('lists sandboxes by kind then age, with short ids, and the reasons of those that cannot be served', () => {
    const text = formatPs(
      {
        kinds: ['runc', 'vmm'],
        sandboxes: [
          summary(ID_B, 'vmm', '2025-01-01T11:00:00.000Z', [container('c1', 'running', 7)]),
          summary(ID_A, 'runc', '2025-01-01T11:59:30.000Z', [container('c2', 'running', 8), container('c3', 'stopped')]),
          summary('c0ffee', 'runc', '2025-01-01T11:58:00.000Z', [], { state: 'stopped', pid: 0, reason: 'its holder died' }),
        ],
        warmPools: [],
      },
      NOW,
    );
    assert.equal(
      text,
      [
        'KIND  SANDBOX        POD               STATE    PID   AGE  CONTAINERS',
        'runc  c0ffee         default/pod-runc  stopped  0     2m   0',
        'runc  a1b2c3d4e5f6a  default/pod-runc  ready    4242  30s  2 (running 1, stopped 1)',
        'vmm   b1b2c3d4e5f6a  default/pod-vmm   ready    4242  1h   1 (running 1)',
        '',
        'c0ffee: its holder died',
        '',
      ].join('\n'),
    );
  });

  it('says which kinds are served when there is no sandbox', () => {
    assert.equal(formatPs({ kinds: ['runc', 'wasm'], sandboxes: [], warmPools: [] }, NOW), 'no sandboxes (kuasard serves runc, wasm)\n');
  });

  it('tells what each warm pool holds and has done', () => {
    const pool = { kind: 'vmm', target: 3, ready: 2, booting: 1, claims: 4, coldStarts: 1, replaced: 0, released: 2, memoryBytes: 0 };
    assert.equal(
      formatPs({ kinds: ['vmm'], sandboxes: [], warmPools: [pool] }, NOW),
      'no sandboxes (kuasard serves vmm)\n' +
        'vmm warm pool: 2 ready, 1 booting (aims at 3); 4 taken, 1 pods found it empty, 0 replaced, 2 given back\n',
    );
  });

  it("shows a sandbox's record: pod, state, resources, directory, sockets, mounts, the kind's state, its containers", () => {
    const spec = {
      name: 'pod-vmm',
      namespace: 'default',
      uid: 'uid-1',
      attempt: 0,
      cgroupParent: '/kubepods/pod1',
      hostNetwork: false,
      resources: { cpuQuotaUs: 50_000, cpuPeriodUs: 100_000, memoryLimitBytes: 512 * 1024 * 1024 },
    } as PodSpec;
    const details: SandboxDetails = {
      ...summary(ID_B, 'vmm', '2025-01-01T11:00:00.000Z', [container('c1', 'running', 7), container('c9', 'stopped')]),
      type: 'sandbox',
      namespace: 'k8s.io',
      spec,
      exit: null,
      netnsPath: '/var/run/netns/cni-1',
      dir: `/run/kuasar/vmm/${ID_B}`,
      taskAddress: `ttrpc+unix:///run/kuasar/vmm/${ID_B}/task.sock`,
      sockets: [`/run/kuasar/vmm/${ID_B}/agent`, `/run/kuasar/vmm/${ID_B}/task.sock`],
      mounts: [
        { mountPoint: `/run/kuasar/vmm/${ID_B}/shared/containers/c1/rootfs`, fsType: 'overlay', source: 'overlay', options: ['rw'] },
      ],
      namespaces: { network: '/var/run/netns/cni-1' },
      kindState: { version: 3, data: { vm: { pid: 999, startTime: '1' }, taps: [] } },
    };
    const lines = formatInspect(details, NOW).split('\n');
    assert.equal(lines[0], `sandbox ${ID_B} (vmm)`);
    assert.ok(lines.includes('  pod            default/pod-vmm (uid uid-1, attempt 0)'), lines.join('\n'));
    assert.ok(lines.includes('  state          ready, pid 4242, created 1h ago'));
    assert.ok(lines.includes('  resources      cpu 0.5, memory 512 MiB'));
    assert.ok(lines.includes(`  sockets        /run/kuasar/vmm/${ID_B}/agent, /run/kuasar/vmm/${ID_B}/task.sock`));
    assert.ok(lines.includes('  kind state     {"vm":{"pid":999,"startTime":"1"},"taps":[]}'));
    assert.ok(lines.includes(`    /run/kuasar/vmm/${ID_B}/shared/containers/c1/rootfs  overlay  overlay  rw`));
    assert.ok(!lines.some((l) => l.startsWith('  reason')), 'no empty field');
    const table = lines.slice(lines.indexOf('  containers') + 1);
    assert.deepEqual(table.slice(0, 3), [
      '    CONTAINER  STATE    PID  EXIT',
      '    c1         running  7',
      '    c9         stopped  0    exit 2 at 2025-01-01T11:59:00.000Z',
    ]);
  });

  it("shows a container's record with its sandbox, bundle, stdio and execs", () => {
    const details: ContainerDetails = {
      ...container('c1', 'running', 7),
      execs: [{ id: 'e1', status: 'stopped', pid: 9, exit: { exitStatus: 0, exitedAt: '2025-01-01T11:59:59.000Z' } }],
      type: 'container',
      kind: 'runc',
      sandbox: ID_A,
      bundle: '/run/containerd/bundle/c1',
      rootfs: [{ type: 'overlay', source: 'overlay', target: '', options: [] }],
      stdio: { stdin: '', stdout: '/fifo/out', stderr: '/fifo/err', terminal: false },
      mounts: [],
      kindState: null,
    };
    const text = formatInspect(details, NOW);
    assert.match(text, new RegExp(`^container c1 \\(runc, sandbox ${ID_A}\\)\n`));
    assert.match(text, /\n {2}stdio +stdout \/fifo\/out, stderr \/fifo\/err\n/);
    assert.match(text, /\n {2}mounts\n {4}\(none\)\n/);
    assert.match(text, /\n {4}e1 +stopped +9 +exit 0 at 2025-01-01T11:59:59\.000Z\n$/);
    assert.doesNotMatch(text, /kind state/);
  });
});
