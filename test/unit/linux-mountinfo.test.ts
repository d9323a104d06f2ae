import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  isMountPoint,
  isWithin,
  mountsUnder,
  parseMountInfo,
  propagationOf,
  readMountInfo,
  unescapeMountPath,
} from '../../src/linux/mountinfo.js';

const sample = `${[
  '27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard',
  '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
  '40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime master:5 - cgroup cgroup rw,name=systemd',
  '90 27 0:50 / /run/k/a\\040b rw shared:7 master:3 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w',
  '91 90 0:4 ipc:[4026532] /run/k/a\\040b/ipc rw - nsfs nsfs rw',
  '92 27 254:0 /srv/data /run/k/ab rw unbindable - ext4 /dev/vda rw',
].join('\n')}\n`;

describe('parseMountInfo', () => {
  it('parses every field, with or without optional fields', () => {
    const [root, cgroup, systemd] = parseMountInfo(sample);
    assert.deepEqual(root, {
      id: 27,
      parentId: 1,
      device: '254:0',
      root: '/',
      mountPoint: '/',
      options: ['rw', 'relatime'],
      optionalFields: ['shared:1'],
      fsType: 'ext4',
      source: '/dev/vda',
      superOptions: ['rw', 'discard'],
    });
    assert.deepEqual(cgroup!.optionalFields, []);
    assert.deepEqual(systemd!.superOptions, ['rw', 'name=systemd']);
  });

  it('unescapes octal escapes in paths', () => {
    assert.equal(unescapeMountPath('/a\\040b\\011c\\012d\\134e'), '/a b\tc\nd\\e');
    assert.equal(parseMountInfo(sample)[3]!.mountPoint, '/run/k/a b');
    assert.equal(parseMountInfo(sample)[4]!.root, 'ipc:[4026532]');
  });

  it('tells the propagation type', () => {
    assert.deepEqual(parseMountInfo(sample).map(propagationOf), ['shared', 'private', 'slave', 'shared', 'private', 'unbindable']);
  });

  it('rejects a line that is not mountinfo', () => {
    assert.throws(() => parseMountInfo('1 2 3\n'), /malformed mountinfo line/);
  });
});

describe('mount queries', () => {
  const table = parseMountInfo(sample);

  it('compares whole path components', () => {
    assert.ok(isWithin('/run/k/a b/ipc', '/run/k/a b'));
    assert.ok(isWithin('/run/k', '/run/k'));
    assert.ok(!isWithin('/run/k/ab', '/run/k/a'));
    assert.ok(isWithin('/anything', '/'));
  });

  it('finds mount points and the mounts under a prefix', async () => {
    assert.equal(await isMountPoint('/run/k/a b', table), true);
    assert.equal(await isMountPoint('/run/k/a b/', table), true);
    assert.equal(await isMountPoint('/run/k', table), false);
    assert.deepEqual(
      (await mountsUnder('/run/k/a b', table)).map((m) => m.id),
      [90, 91],
    );
    assert.deepEqual(
      (await mountsUnder('/run/k', table)).map((m) => m.id),
      [90, 91, 92],
    );
  });

  it('reads the live table of this process', async () => {
    const live = await readMountInfo();
    assert.ok(live.some((m) => m.mountPoint === '/'));
    assert.equal(await isMountPoint('/proc'), true);
  });
});
