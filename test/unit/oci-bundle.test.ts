import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Code } from '../../src/base/errors.js';
import { readBundleSpec, resolveRootfs } from '../../src/oci/bundle.js';
import type { Spec } from '../../src/oci/spec.js';

describe('bundles', () => {
  let dir: string;
  const bundle = async (name: string, config?: string): Promise<string> => {
    const bundleDir = path.join(dir, name);
    await mkdir(bundleDir);
    if (config !== undefined) await writeFile(path.join(bundleDir, 'config.json'), config);
    return bundleDir;
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kuasar-bundle-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads config.json', async () => {
    const spec = { ociVersion: '1.1.0', root: { path: 'rootfs' }, process: { cwd: '/', user: { uid: 0, gid: 0 }, args: ['sh'] } };
    assert.deepEqual(await readBundleSpec(await bundle('good', JSON.stringify(spec))), spec);
  });

  it('says FailedPrecondition when the bundle or its config.json is missing', async () => {
    const empty = await bundle('empty');
    await assert.rejects(readBundleSpec(empty), { code: Code.FailedPrecondition, message: `bundle ${empty}: no config.json` });
    await assert.rejects(readBundleSpec(path.join(dir, 'nowhere')), { code: Code.FailedPrecondition });
  });

  it('says InvalidArgument when config.json is not a JSON object', async () => {
    const broken = await bundle('broken', '{"ociVersion": ');
    await assert.rejects(readBundleSpec(broken), {
      code: Code.InvalidArgument,
      message: new RegExp(`^bundle ${broken}: config.json is not JSON`),
    });
    for (const [name, text] of [
      ['array', '[]'],
      ['null', 'null'],
      ['string', '"spec"'],
    ]) {
      await assert.rejects(
        readBundleSpec(await bundle(name!, text)),
        { code: Code.InvalidArgument, message: /config.json is not a JSON object/ },
        name,
      );
    }
  });

  it('says Internal when config.json cannot be read for another reason', async () => {
    const odd = await bundle('odd');
    await mkdir(path.join(odd, 'config.json'));
    await assert.rejects(readBundleSpec(odd), { code: Code.Internal, message: /EISDIR/ });
  });
});

describe('resolveRootfs', () => {
  const spec = (root?: Spec['root']): Spec => (root ? { ociVersion: '1.1.0', root } : { ociVersion: '1.1.0' });

  it('is the mount point when containerd sent rootfs mounts', () => {
    assert.equal(resolveRootfs('/b/c1', spec({ path: 'elsewhere' }), 1, '/pods/p1/c1/rootfs'), '/pods/p1/c1/rootfs');
    assert.equal(resolveRootfs('/b/c1', spec({ path: 'elsewhere' }), 2), '/b/c1/rootfs', 'containerd’s shims mount at <bundle>/rootfs');
  });

  it('honours root.path when containerd prepared the rootfs in the bundle', () => {
    assert.equal(resolveRootfs('/b/c1', spec({ path: 'rootfs' }), 0, '/ignored'), '/b/c1/rootfs');
    assert.equal(resolveRootfs('/b/c1', spec({ path: 'images/root/' }), 0), '/b/c1/images/root');
    assert.equal(resolveRootfs('/b/c1', spec({ path: '/var/lib/roots/c1' }), 0), '/var/lib/roots/c1');
    assert.equal(resolveRootfs('/b/c1', spec(), 0), '/b/c1/rootfs', 'no root: the bundle’s rootfs');
  });

  it('rejects a root.path that is empty or not a string', () => {
    assert.throws(() => resolveRootfs('/b/c1', spec({ path: '' }), 0), {
      code: Code.InvalidArgument,
      message: 'bundle /b/c1: config.json root.path must be a non-empty string',
    });
    for (const root of [{ path: 7 }, {}, 'rootfs']) {
      assert.throws(
        () => resolveRootfs('/b/c1', { ociVersion: '1.1.0', root } as unknown as Spec, 0),
        { code: Code.InvalidArgument },
        JSON.stringify(root),
      );
    }
  });
});
