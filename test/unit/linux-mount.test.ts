import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Code, RuntimeError } from '../../src/base/errors.js';
import { MS } from '../../src/linux/libc/mounts.js';
import { MOUNT_DATA_LIMIT, mountCalls, parseMountOptions } from '../../src/linux/mount.js';

describe('parseMountOptions', () => {
  it('turns flag words into mount flags and keeps the rest as data', () => {
    assert.deepEqual(parseMountOptions(['ro', 'nosuid', 'nodev', 'noexec', 'size=65536k', 'mode=755']), {
      flags: MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC,
      propagation: 0,
      data: 'size=65536k,mode=755',
    });
  });

  it('lets a later word undo an earlier one', () => {
    assert.equal(parseMountOptions(['ro', 'rw']).flags, 0);
    assert.equal(parseMountOptions(['nosuid', 'suid', 'nodev']).flags, MS.NODEV);
    assert.equal(parseMountOptions(['defaults']).flags, 0);
  });

  it('separates propagation from the mount flags', () => {
    const parsed = parseMountOptions(['rbind', 'rprivate']);
    assert.equal(parsed.flags, MS.BIND | MS.REC);
    assert.equal(parsed.propagation, MS.PRIVATE | MS.REC);
    assert.equal(parseMountOptions(['bind', 'slave']).propagation, MS.SLAVE);
  });

  it('refuses options that containerd, not the kernel, implements', () => {
    assert.throws(
      () => parseMountOptions(['loop']),
      (err: unknown) => err instanceof RuntimeError && err.code === Code.InvalidArgument,
    );
    assert.throws(() => parseMountOptions(['X-containerd.mkdir.path=/x']), /not supported/);
  });
});

describe('mountCalls', () => {
  it('mounts an overlay in one call with its layers as data', () => {
    const calls = mountCalls(
      { type: 'overlay', source: 'overlay', options: ['index=off', 'workdir=/s/2/work', 'upperdir=/s/2/fs', 'lowerdir=/s/1/fs'] },
      '/run/c1/rootfs',
    );
    assert.deepEqual(calls, [
      {
        source: 'overlay',
        target: '/run/c1/rootfs',
        fstype: 'overlay',
        flags: 0,
        data: 'index=off,workdir=/s/2/work,upperdir=/s/2/fs,lowerdir=/s/1/fs',
      },
    ]);
  });

  it('remounts a new read-only bind mount, since binding ignores ro', () => {
    const calls = mountCalls({ type: 'bind', source: '/s/1/fs', options: ['rbind', 'ro'] }, '/t');
    assert.deepEqual(calls, [
      { source: '/s/1/fs', target: '/t', fstype: 'bind', flags: MS.BIND | MS.REC | MS.RDONLY, data: null },
      { source: null, target: '/t', fstype: null, flags: MS.BIND | MS.RDONLY | MS.REMOUNT, data: null },
    ]);
  });

  it('binds read-write in one call and changes propagation in a call of its own', () => {
    const calls = mountCalls({ type: 'bind', source: '/a', options: ['rbind', 'rw', 'rprivate'] }, '/t');
    assert.deepEqual(
      calls.map((c) => c.flags),
      [MS.BIND | MS.REC, MS.PRIVATE | MS.REC],
    );
  });

  it('remounts in place without a second remount', () => {
    const calls = mountCalls({ type: 'bind', source: '', options: ['remount', 'bind', 'ro'] }, '/t');
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.flags, MS.REMOUNT | MS.BIND | MS.RDONLY);
  });

  it('changes only the propagation when that is all it is asked', () => {
    assert.deepEqual(mountCalls({ type: 'none', source: '', options: ['rshared'] }, '/t'), [
      { source: null, target: '/t', fstype: null, flags: MS.SHARED | MS.REC, data: null },
    ]);
  });

  it('refuses data longer than a page instead of letting the kernel cut it', () => {
    const lowers = Array.from({ length: 120 }, (_, i) => `/var/lib/containerd/snapshots/${1000 + i}/fs`);
    assert.throws(
      () => mountCalls({ type: 'overlay', source: 'overlay', options: [`lowerdir=${lowers.join(':')}`] }, '/t'),
      (err: unknown) => {
        assert.ok(err instanceof RuntimeError);
        assert.equal(err.code, Code.InvalidArgument);
        assert.match(err.message, new RegExp(`over mount\\(2\\)'s ${MOUNT_DATA_LIMIT}-byte limit \\(120 lower layers\\)`));
        return true;
      },
    );
  });
});
