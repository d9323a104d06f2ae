import assert from 'node:assert/strict';
import { appendFile, lstat, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  addMountFlags,
  detachTree,
  makePrivateBindOfItself,
  mountAll,
  mountOne,
  unmountAll,
  unmountPrivateBindOfItself,
  unmountRecursive,
} from '../../src/linux/mount.js';
import { isMountPoint, mountsAt, mountsUnder, propagationOf } from '../../src/linux/mountinfo.js';
import { lowerLayerFile } from '../../src/linux/overlay-layers.js';

const skip = process.getuid?.() !== 0 && 'needs root';

describe('mounting snapshot mounts', { skip }, () => {
  let base: string;
  const at = (...parts: string[]): string => path.join(base, ...parts);

  before(async () => {
    base = await mkdtemp(path.join(tmpdir(), 'kuasar-mount-'));
    for (const dir of ['lower1', 'lower2', 'upper', 'work', 'rootfs', 'data']) await mkdir(at(dir));
    await mkdir(at('lower1', 'mnt'));
    await writeFile(at('lower1', 'a'), 'from lower1');
    await writeFile(at('lower2', 'a'), 'from lower2');
    await writeFile(at('data', 'file'), 'data');
  });
  after(async () => {
    await unmountRecursive(base).catch(() => undefined);
    await rm(base, { recursive: true, force: true });
  });

  it('mounts an overlay with a read-only bind below it, and unmounts them all', async () => {
    await mountAll(
      [
        {
          type: 'overlay',
          source: 'overlay',
          target: '',
          options: [`workdir=${at('work')}`, `upperdir=${at('upper')}`, `lowerdir=${at('lower2')}:${at('lower1')}`],
        },
        { type: 'bind', source: at('data'), target: 'mnt', options: ['rbind', 'ro'] },
      ],
      at('rootfs'),
    );
    assert.equal(await readFile(at('rootfs', 'a'), 'utf8'), 'from lower2', 'the first lowerdir is on top');
    await writeFile(at('rootfs', 'b'), 'new');
    assert.equal(await readFile(at('upper', 'b'), 'utf8'), 'new', 'writes go to the upper dir');
    assert.equal(await readFile(at('rootfs', 'mnt', 'file'), 'utf8'), 'data');
    await assert.rejects(writeFile(at('rootfs', 'mnt', 'x'), ''), { code: 'EROFS' });
    assert.ok((await mountsAt(at('rootfs', 'mnt')))[0]!.options.includes('ro'));

    await unmountRecursive(at('rootfs'));
    assert.deepEqual(await mountsUnder(base), []);
  });

  it("finds the lower layer's file an overlay shows, and none once the container changed it", async () => {
    for (const dir of ['layer-top', 'layer-base', 'layer-upper', 'layer-work', 'merged']) await mkdir(at(dir));
    for (const layer of ['layer-top', 'layer-base']) await mkdir(at(layer, 'app'));
    await writeFile(at('layer-top', 'app', 'm.wasm'), 'top');
    await writeFile(at('layer-base', 'app', 'm.wasm'), 'base');
    await writeFile(at('layer-base', 'app', 'only-base'), 'base');
    const rootfs = [
      {
        type: 'overlay',
        source: 'overlay',
        target: '',
        options: [
          'index=off',
          `workdir=${at('layer-work')}`,
          `upperdir=${at('layer-upper')}`,
          `lowerdir=${at('layer-top')}:${at('layer-base')}`,
        ],
      },
    ];
    await mountAll(rootfs, at('merged'));
    try {
      const seen = (file: string) => lstat(at('merged', file), { bigint: true });
      const ino = async (...parts: string[]) => (await lstat(at(...parts), { bigint: true })).ino;
      assert.equal(lowerLayerFile(rootfs, 'app/m.wasm', await seen('app/m.wasm'))?.ino, await ino('layer-top', 'app', 'm.wasm'));
      assert.equal(lowerLayerFile(rootfs, 'app/only-base', await seen('app/only-base'))?.ino, await ino('layer-base', 'app', 'only-base'));
      assert.equal(lowerLayerFile([{ ...rootfs[0]!, type: 'bind' }], 'app/m.wasm', await seen('app/m.wasm')), undefined, 'not an overlay');
      assert.equal(lowerLayerFile(rootfs, '../m.wasm', await seen('app/m.wasm')), undefined, 'a path out of the rootfs');
      const before = await seen('app/m.wasm');
      await appendFile(at('merged', 'app', 'm.wasm'), ' changed');
      assert.equal(lowerLayerFile(rootfs, 'app/m.wasm', await seen('app/m.wasm')), undefined, "the container's copy, in the upper layer");
      assert.equal(lowerLayerFile(rootfs, 'app/m.wasm', before), undefined, 'what was seen before is not the file any more');
    } finally {
      await unmountRecursive(at('merged'));
    }
  });

  it('undoes the mounts it made when a later one fails', async () => {
    await assert.rejects(
      mountAll(
        [
          { type: 'bind', source: at('lower1'), target: '', options: ['rbind'] },
          { type: 'bind', source: at('no-such-dir'), target: 'mnt', options: ['rbind'] },
        ],
        at('rootfs'),
      ),
      { name: 'ErrnoError', code: 'ENOENT' },
    );
    assert.deepEqual(await mountsUnder(base), []);
  });

  it('refuses a mount target that climbs out of the rootfs', async () => {
    await assert.rejects(mountAll([{ type: 'bind', source: at('data'), target: '../../etc', options: ['bind'] }], at('rootfs')), /escapes/);
  });

  it('binds, stacks and unmounts a whole stack at one point', async () => {
    await mountOne({ type: 'bind', source: at('lower1'), options: ['bind'] }, at('rootfs'));
    await mountOne({ type: 'bind', source: at('lower2'), options: ['bind', 'ro'] }, at('rootfs'));
    assert.equal(await readFile(at('rootfs', 'a'), 'utf8'), 'from lower2');
    await assert.rejects(writeFile(at('rootfs', 'c'), ''), { code: 'EROFS' });
    assert.equal(await unmountAll(at('rootfs')), 2);
    assert.equal(await isMountPoint(at('rootfs')), false);
    assert.equal(await unmountAll(at('rootfs')), 0, 'nothing to unmount is no error');
  });

  it('detaches a stack and every mount below it in one go, without the mount table', async () => {
    await mkdir(at('lower2', 'mnt'), { recursive: true });
    await mountOne({ type: 'bind', source: at('lower1'), options: ['bind'] }, at('rootfs'));
    await mountOne({ type: 'bind', source: at('lower2'), options: ['bind'] }, at('rootfs'));
    await mountOne({ type: 'bind', source: at('data'), options: ['bind', 'ro'] }, at('rootfs', 'mnt'));
    assert.equal(await readFile(at('rootfs', 'mnt', 'file'), 'utf8'), 'data');
    assert.equal(detachTree(at('rootfs')), 2, 'both mounts stacked at the point');
    assert.deepEqual(await mountsUnder(at('rootfs')), [], 'the mount below went with them');
    assert.equal(detachTree(at('rootfs')), 0, 'nothing to detach is no error');
    assert.equal(await readFile(at('data', 'file'), 'utf8'), 'data', 'the sources are untouched');
  });

  it('adds per-mount flags, keeping those a mount has, to one mount or to every mount below it', async () => {
    await mkdir(at('lower2', 'mnt'), { recursive: true });
    await symlink('/etc', at('data', 'link'));
    await mountAll(
      [
        { type: 'bind', source: at('lower2'), target: '', options: ['bind', 'nodev'] },
        { type: 'bind', source: at('data'), target: 'mnt', options: ['bind'] },
      ],
      at('rootfs'),
    );
    const optionsAt = async (...parts: string[]) => (await mountsAt(at(...parts))).at(-1)!.options;

    await addMountFlags(at('rootfs'), ['ro']);
    assert.ok((await optionsAt('rootfs')).includes('ro'));
    assert.ok((await optionsAt('rootfs')).includes('nodev'), 'the flags it had stay');
    assert.ok((await optionsAt('rootfs', 'mnt')).includes('rw'), 'a mount below is left alone');
    await writeFile(at('rootfs', 'mnt', 'file'), 'still writable');

    await addMountFlags(at('rootfs'), ['nosymfollow'], { recursive: true });
    for (const point of [['rootfs'], ['rootfs', 'mnt']]) assert.ok((await optionsAt(...point)).includes('nosymfollow'), point.join('/'));
    assert.ok((await optionsAt('rootfs')).includes('ro'), 'still read-only');
    await assert.rejects(readFile(at('rootfs', 'mnt', 'link', 'hostname')), { code: 'ELOOP' });

    await assert.rejects(addMountFlags(at('rootfs'), ['rprivate']), /not all per-mount flags/);
    await unmountRecursive(at('rootfs'));
    await assert.rejects(addMountFlags(at('rootfs'), ['ro']), /is not a mount point/);
    assert.deepEqual(await mountsUnder(base), []);
  });

  it('makes a directory a private bind mount of itself, once', async () => {
    await makePrivateBindOfItself(at('data'));
    await makePrivateBindOfItself(at('data'));
    const stack = await mountsAt(at('data'));
    assert.equal(stack.length, 1);
    assert.equal(propagationOf(stack[0]!), 'private');
    await unmountRecursive(at('data'));
    assert.deepEqual(await mountsUnder(base), []);
  });

  it('undoes only its own bind of a directory onto itself, and not while something is mounted below it', async () => {
    await makePrivateBindOfItself(at('data'));
    await mkdir(at('data', 'below'), { recursive: true });
    await mountOne({ type: 'bind', source: at('lower1'), options: ['bind'] }, at('data', 'below'));
    assert.equal(await unmountPrivateBindOfItself(at('data')), false, 'busy: a mount below it remains');
    assert.equal((await mountsAt(at('data'))).length, 1);
    await unmountAll(at('data', 'below'));
    assert.equal(await unmountPrivateBindOfItself(at('data')), true);
    assert.deepEqual(await mountsUnder(base), []);
    assert.equal(await unmountPrivateBindOfItself(at('data')), false, 'nothing left to undo');

    // A file system mounted at the directory (not a bind of itself) is someone else's: kept.
    await mountAll([{ type: 'tmpfs', source: 'tmpfs', target: '', options: ['size=1m'] }], at('data'));
    assert.equal(await unmountPrivateBindOfItself(at('data')), false);
    assert.equal((await mountsAt(at('data'))).length, 1);
    await unmountAll(at('data'));
    // Nor a bind of another directory onto it.
    await mountOne({ type: 'bind', source: at('lower2'), options: ['bind'] }, at('data'));
    assert.equal(await unmountPrivateBindOfItself(at('data')), false);
    await unmountAll(at('data'));
    assert.deepEqual(await mountsUnder(base), []);
  });
});
