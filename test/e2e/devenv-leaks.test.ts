// The leak diff on made-up snapshots: what a scope counts and what it leaves to others. (No root
// needed; it lives beside the e2e tests that depend on it.)
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { diffHost, NO_LEAKS, type HostSnapshot, type LeakScope } from '../../src/devenv/leaks.js';
import type { HostProcess } from '../../src/devenv/processes.js';

const scope: LeakScope = { dir: '/run/kdev-aaaaaa', cgroupName: 'kuasar-kdev-aaaaaa', bridge: 'kbraaaaaa', daemonPids: [100] };

function proc(pid: number, ppid: number, cmdline: string, cgroups: string[] = ['memory:/']): HostProcess {
  return { pid, ppid, state: 'S', startTime: `${pid}0`, cmdline, cgroups, namespaces: {} };
}

function snapshot(parts: Partial<HostSnapshot>): HostSnapshot {
  return { mounts: [], netns: [], cgroups: [], processes: [], links: [], files: [], ...parts };
}

const base = snapshot({ processes: [proc(1, 0, '/sbin/init'), proc(100, 1, 'containerd --config /run/kdev-aaaaaa/containerd.toml')] });

describe('diffHost', () => {
  it('finds nothing between equal snapshots', () => {
    assert.deepEqual(diffHost(base, base, { scope }), NO_LEAKS);
  });

  it("counts the scope's shims, their containers and processes in its cgroup, but not its daemons", () => {
    const after = snapshot({
      processes: [
        ...base.processes,
        proc(200, 1, 'containerd-shim-runc-v2 -id x -address /run/kdev-aaaaaa/containerd.sock'),
        proc(201, 200, 'sleep 3600'),
        proc(300, 1, 'holder', ['memory:/kuasar-kdev-aaaaaa/pod1']),
      ],
    });
    assert.deepEqual(diffHost(base, after, { scope }).processes, [
      'pid 200 (parent 1): containerd-shim-runc-v2 -id x -address /run/kdev-aaaaaa/containerd.sock',
      'pid 201 (parent 200): sleep 3600',
      'pid 300 (parent 1): holder',
    ]);
  });

  it('leaves other environments and unrelated activity to their owners', () => {
    const after = snapshot({
      processes: [
        ...base.processes,
        proc(400, 1, 'containerd-shim-runc-v2 -address /run/kdev-bbbbbb/containerd.sock'),
        proc(401, 1, 'tsc -p .'),
        proc(402, 1, 'sleep 5', ['memory:/kuasar-kdev-bbbbbb/c']),
      ],
      mounts: [
        { id: 7, mountPoint: '/run/kdev-bbbbbb/state/x/rootfs', fsType: 'overlay', source: 'overlay' },
        { id: 8, mountPoint: '/tmp/someone-else/ns/ipc', fsType: 'nsfs', source: 'nsfs' },
      ],
      cgroups: ['/sys/fs/cgroup/memory/kuasar-kdev-bbbbbb/c', '/sys/fs/cgroup/memory/kuasar-e2e-1'],
      links: [{ name: 'kbrbbbbbb' }, { name: 'veth1', master: 'kbrbbbbbb' }],
    });
    assert.deepEqual(diffHost(base, after, { scope }), NO_LEAKS);
  });

  it("counts the scope's mounts, cgroups, veths and named netns", () => {
    const after = snapshot({
      processes: base.processes,
      mounts: [
        { id: 9, mountPoint: '/run/kdev-aaaaaa/k/runc/p/rootfs', fsType: 'overlay', source: 'overlay' },
        { id: 10, mountPoint: '/run/netns/cni-1', fsType: 'nsfs', source: 'nsfs' },
      ],
      netns: ['/run/netns/cni-1'],
      cgroups: ['/sys/fs/cgroup/pids/kuasar-kdev-aaaaaa/c1'],
      links: [{ name: 'veth2', master: 'kbraaaaaa' }],
    });
    assert.deepEqual(diffHost(base, after, { scope }), {
      mounts: ['overlay overlay on /run/kdev-aaaaaa/k/runc/p/rootfs', 'nsfs nsfs on /run/netns/cni-1'],
      netns: ['/run/netns/cni-1'],
      cgroups: ['/sys/fs/cgroup/pids/kuasar-kdev-aaaaaa/c1'],
      processes: [],
      links: ['veth2 (master kbraaaaaa)'],
      files: [],
    });
  });

  it('tells a new process from an old one that had the same pid', () => {
    const reused = { ...proc(201, 1, 'sleep 1', ['memory:/kuasar-kdev-aaaaaa/c']), startTime: '999' };
    const before = snapshot({ processes: [...base.processes, proc(201, 1, 'sleep 1', ['memory:/kuasar-kdev-aaaaaa/c'])] });
    const after = snapshot({ processes: [...base.processes, reused] });
    assert.deepEqual(diffHost(before, after, { scope }).processes, ['pid 201 (parent 1): sleep 1']);
  });

  it('counts everything new when given no scope', () => {
    const after = snapshot({ processes: [...base.processes, proc(401, 1, 'tsc -p .')], cgroups: ['/sys/fs/cgroup/memory/kuasar-e2e-1'] });
    const diff = diffHost(base, after, { ignorePids: [100] });
    assert.deepEqual(diff.processes, ['pid 401 (parent 1): tsc -p .']);
    assert.deepEqual(diff.cgroups, ['/sys/fs/cgroup/memory/kuasar-e2e-1']);
  });
});
