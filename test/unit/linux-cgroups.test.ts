import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Code, RuntimeError } from '../../src/base/errors.js';
import { cgroupDirsFor, detectCgroupLayout, isSystemdCgroupsPath, parseCgroupLayout, parseProcCgroup } from '../../src/linux/cgroups.js';
import { parseMountInfo } from '../../src/linux/mountinfo.js';

// This project's host: v1 controllers, a named systemd hierarchy and an empty cgroup2 tree.
const hybrid = parseMountInfo(
  [
    '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
    '32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct',
    '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
    '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd',
    '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
    '77 27 0:32 / /mnt/memory-again rw - cgroup cgroup rw,memory',
  ].join('\n'),
);

const unified = parseMountInfo('30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n');

const ownCgroups = parseProcCgroup(['5:memory:/user/session', '4:cpu,cpuacct:/', '2:name=systemd:/init.scope', '0::/daemon'].join('\n'));

describe('parseCgroupLayout', () => {
  it('finds v1 hierarchies with their controllers and the hybrid cgroup2 tree', () => {
    const layout = parseCgroupLayout(hybrid);
    assert.equal(layout.mode, 'hybrid');
    assert.deepEqual(layout.hierarchies, [
      { version: 1, mountPoint: '/sys/fs/cgroup/cpu,cpuacct', root: '/', controllers: ['cpu', 'cpuacct'] },
      { version: 1, mountPoint: '/sys/fs/cgroup/memory', root: '/', controllers: ['memory'] },
      { version: 1, mountPoint: '/sys/fs/cgroup/systemd', root: '/', controllers: ['name=systemd'] },
      { version: 2, mountPoint: '/sys/fs/cgroup/unified', root: '/', controllers: [] },
    ]);
  });

  it('tells unified and legacy hosts apart', () => {
    assert.equal(parseCgroupLayout(unified).mode, 'unified');
    assert.equal(parseCgroupLayout(hybrid.filter((m) => m.fsType !== 'cgroup2')).mode, 'legacy');
  });
});

describe('cgroupDirsFor', () => {
  it('puts an absolute path below every hierarchy', () => {
    assert.deepEqual(cgroupDirsFor('/k8s.io/abc', parseCgroupLayout(hybrid), ownCgroups), [
      '/sys/fs/cgroup/cpu,cpuacct/k8s.io/abc',
      '/sys/fs/cgroup/memory/k8s.io/abc',
      '/sys/fs/cgroup/systemd/k8s.io/abc',
      '/sys/fs/cgroup/unified/k8s.io/abc',
    ]);
    assert.deepEqual(cgroupDirsFor('/k8s.io/abc', parseCgroupLayout(unified)), ['/sys/fs/cgroup/k8s.io/abc']);
  });

  it('puts a relative path below our own cgroup in each hierarchy', () => {
    assert.deepEqual(cgroupDirsFor('pods/abc', parseCgroupLayout(hybrid), ownCgroups), [
      '/sys/fs/cgroup/cpu,cpuacct/pods/abc',
      '/sys/fs/cgroup/memory/user/session/pods/abc',
      '/sys/fs/cgroup/systemd/init.scope/pods/abc',
      '/sys/fs/cgroup/unified/daemon/pods/abc',
    ]);
  });

  it('accounts for a hierarchy mounted from a subtree (a cgroup namespace)', () => {
    const nested = parseCgroupLayout(parseMountInfo('30 23 0:26 /daemon /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n'));
    assert.deepEqual(cgroupDirsFor('abc', nested, ownCgroups), ['/sys/fs/cgroup/abc']);
  });

  it('rejects systemd-style and escaping paths', () => {
    assert.ok(isSystemdCgroupsPath('kubepods-besteffort.slice:cri-containerd:abc'));
    assert.ok(!isSystemdCgroupsPath('/k8s.io/abc'));
    assert.throws(
      () => cgroupDirsFor('system.slice:cri-containerd:abc', parseCgroupLayout(unified)),
      (err: unknown) => err instanceof RuntimeError && err.code === Code.Unimplemented,
    );
    assert.throws(() => cgroupDirsFor('/k8s.io/../../etc', parseCgroupLayout(unified)), /invalid cgroups path/);
    assert.throws(() => cgroupDirsFor('', parseCgroupLayout(unified)), /invalid cgroups path/);
  });
});

describe('parseProcCgroup', () => {
  it('parses v1 and v2 lines', () => {
    assert.deepEqual(parseProcCgroup('4:cpu,cpuacct:/a:b\n0::/\n'), [
      { hierarchyId: 4, controllers: ['cpu', 'cpuacct'], path: '/a:b' },
      { hierarchyId: 0, controllers: [], path: '/' },
    ]);
  });
});

describe('detectCgroupLayout', () => {
  it('reads this host’s layout', async () => {
    const layout = await detectCgroupLayout();
    assert.ok(layout.hierarchies.length > 0);
    assert.ok(layout.hierarchies.every((h) => h.mountPoint.startsWith('/')));
  });
});
