import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Code, RuntimeError } from '../../src/base/errors.js';
import { upsertMount, withNamespacePath, withNewNamespace, withoutNamespace, withRootPath, type Spec } from '../../src/oci/spec.js';

function baseSpec(): Spec {
  return {
    ociVersion: '1.1.0',
    process: { user: { uid: 0, gid: 0 }, cwd: '/', args: ['sh'] },
    root: { path: 'rootfs', readonly: true },
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid'] },
      { destination: '/etc/hosts', type: 'bind', source: '/a/hosts', options: ['rbind', 'ro'] },
    ],
    linux: {
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network', path: '/var/run/netns/x' }],
      cgroupsPath: '/k8s.io/abc',
    },
    vendorField: { kept: true },
  };
}

const frozen = (): Spec => structuredClone(baseSpec());

describe('namespace transforms', () => {
  it('joins a namespace by path in place of a new one', () => {
    const spec = withNamespacePath(frozen(), 'ipc', '/run/kuasar/pod/ipc');
    assert.deepEqual(spec.linux!.namespaces, [
      { type: 'pid' },
      { type: 'ipc', path: '/run/kuasar/pod/ipc' },
      { type: 'uts' },
      { type: 'mount' },
      { type: 'network', path: '/var/run/netns/x' },
    ]);
    assert.equal(spec.linux!.cgroupsPath, '/k8s.io/abc', 'other linux fields are kept');
  });

  it('adds a namespace that was missing, and creates linux when absent', () => {
    const spec = withNamespacePath({ ociVersion: '1.1.0' }, 'uts', '/p/uts');
    assert.deepEqual(spec.linux, { namespaces: [{ type: 'uts', path: '/p/uts' }] });
  });

  it('refuses a relative namespace path', () => {
    assert.throws(
      () => withNamespacePath(frozen(), 'ipc', 'ipc'),
      (err: unknown) => err instanceof RuntimeError && err.code === Code.InvalidArgument,
    );
  });

  it('drops a namespace, or makes it new again', () => {
    const others = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
    assert.deepEqual(withoutNamespace(frozen(), 'network').linux!.namespaces, others);
    assert.deepEqual(withNewNamespace(frozen(), 'network').linux!.namespaces, [...others, { type: 'network' }]);
    assert.deepEqual(withNewNamespace(frozen(), 'cgroup').linux!.namespaces, [
      ...others,
      { type: 'network', path: '/var/run/netns/x' },
      { type: 'cgroup' },
    ]);
  });

  it('never mutates its input', () => {
    const input = frozen();
    withNamespacePath(input, 'ipc', '/x');
    withoutNamespace(input, 'pid');
    upsertMount(input, { destination: '/proc', type: 'none' });
    withRootPath(input, '/r');
    assert.deepEqual(input, baseSpec());
  });
});

describe('mount transforms', () => {
  const shm = { destination: '/dev/shm', type: 'bind', source: '/run/kuasar/pod/shm', options: ['rbind', 'rw'] };

  it('upserts: replaces, drops duplicates, or appends', () => {
    const doubled: Spec = { ...frozen(), mounts: [...frozen().mounts!, { destination: '/dev//shm', type: 'tmpfs' }] };
    assert.deepEqual(
      upsertMount(doubled, shm).mounts!.map((m) => m.source ?? m.type),
      ['proc', '/run/kuasar/pod/shm', '/a/hosts'],
    );
    assert.equal(upsertMount(frozen(), { destination: '/data', type: 'bind', source: '/d' }).mounts!.at(-1)!.destination, '/data');
    assert.deepEqual(upsertMount({ ociVersion: '1' }, shm).mounts, [shm]);
  });
});

describe('withRootPath', () => {
  it('sets the root path and keeps readonly unless told', () => {
    assert.deepEqual(withRootPath(frozen(), '/run/c/rootfs').root, { path: '/run/c/rootfs', readonly: true });
    assert.deepEqual(withRootPath(frozen(), '/r', false).root, { path: '/r', readonly: false });
    assert.deepEqual(withRootPath({ ociVersion: '1' }, 'rootfs').root, { path: 'rootfs' });
    assert.deepEqual(withRootPath(frozen(), '/r').vendorField, { kept: true });
  });
});
