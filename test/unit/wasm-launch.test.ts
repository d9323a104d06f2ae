import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Code } from '../../src/base/errors.js';
import { mountGuestFilesystem } from '../../src/kinds/wasm/guest-mounts.js';
import { envObject, guestFilesystem, parseModuleArg, wasmLaunch } from '../../src/kinds/wasm/launch.js';
import { resolveInRootfs } from '../../src/kinds/wasm/rootfs-path.js';

describe('wasm launch', () => {
  let dir: string;
  let rootfs: string;
  let volume: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wasm-launch-'));
    rootfs = join(dir, 'rootfs');
    volume = join(dir, 'volume');
    await mkdir(join(rootfs, 'app'), { recursive: true });
    await mkdir(volume);
    await writeFile(join(rootfs, 'app/m.wasm'), '');
    await writeFile(join(dir, 'outside.wasm'), '');
    await symlink('../../outside.wasm', join(rootfs, 'app/escape.wasm'));
    await symlink('/app/m.wasm', join(rootfs, 'app/absolute.wasm'));
    await symlink('loop', join(rootfs, 'loop'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('splits path#function, defaulting to _start', () => {
    assert.deepEqual(parseModuleArg('/m.wasm'), { path: '/m.wasm', entry: '_start' });
    assert.deepEqual(parseModuleArg('/m.wasm#run'), { path: '/m.wasm', entry: 'run' });
    assert.throws(() => parseModuleArg('/m.wasm#'), /expected <path> or <path>#<function>/);
  });

  it('turns K=V strings into an environment', () => {
    assert.deepEqual(envObject(['A=1', 'B=x=y', 'A=2', 'bad']), { A: '2', B: 'x=y' });
  });

  it('resolves the module against the working directory and preopens the rootfs alone', async () => {
    const launch = await wasmLaunch(
      {
        process: { args: ['m.wasm#run', 'x'], env: ['K=v'], cwd: '/app' },
        mounts: [{ destination: '/data', type: 'bind', source: volume, options: ['rbind'] }],
        linux: { resources: { memory: { limit: 1 << 20 } } },
      },
      rootfs,
    );
    const { moduleStats, ...rest } = launch;
    assert.equal(moduleStats?.ino, statSync(join(rootfs, 'app/m.wasm'), { bigint: true }).ino, "the module file's own lstat");
    assert.deepEqual(rest, {
      modulePath: join(rootfs, 'app/m.wasm'),
      entry: 'run',
      args: ['m.wasm', 'x'],
      env: { K: 'v', PWD: '/app' },
      preopens: { '/': rootfs },
      memoryLimit: 1 << 20,
    });
  });

  it('follows links inside the rootfs, never out of it', async () => {
    const module = async (arg: string) => (await wasmLaunch({ process: { args: [arg] } }, rootfs)).modulePath;
    assert.equal(await module('/app/absolute.wasm'), join(rootfs, 'app/m.wasm'), 'an absolute target starts at the rootfs');
    assert.equal(await module('/../../app/m.wasm'), join(rootfs, 'app/m.wasm'), '.. stops at the rootfs');
    // ../../outside.wasm from /app climbs no higher than the rootfs: /outside.wasm there, which does not exist.
    await assert.rejects(module('/app/escape.wasm'), /no such file in the container's image/);
    await assert.rejects(module('/loop'), /too many levels of symbolic links/);
  });

  it('refuses a module that is missing, or no module at all', async () => {
    await assert.rejects(wasmLaunch({ process: { args: ['/nope.wasm'] } }, rootfs), /no such file in the container's image/);
    await assert.rejects(wasmLaunch({ process: { args: [] } }, rootfs), /needs args\[0\]/);
  });
});

describe('wasm guest mounts (planning)', () => {
  it('keeps every bind mount, file or directory, in order, with its options and a propagation', () => {
    const planned = guestFilesystem(
      {
        mounts: [
          { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid'] },
          { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['mode=1777'] },
          { destination: '/etc/hosts', type: 'bind', source: '/pod/hosts', options: ['rbind', 'rprivate', 'rw'] },
          { destination: '/config/', type: 'bind', source: '/host/config', options: ['rbind', 'rslave', 'ro'] },
          { destination: 'relative/../data', source: 'volumes/data', options: ['bind', 'ro', 'rw'] },
          { destination: '/cache', type: 'bind', source: '/host/cache' },
        ],
      },
      '/bundle',
    );
    assert.deepEqual(planned, {
      mounts: [
        { destination: '/etc/hosts', source: '/pod/hosts', options: ['rbind', 'rprivate', 'rw'] },
        { destination: '/config', source: '/host/config', options: ['rbind', 'rslave', 'ro'] },
        // A relative source is the bundle's; a relative destination is the guest's `/`'s.
        { destination: '/data', source: '/bundle/volumes/data', options: ['bind', 'ro', 'rw', 'rprivate'] },
        // "type": "bind" alone is a bind all the same.
        { destination: '/cache', source: '/host/cache', options: ['bind', 'rprivate'] },
      ],
      readonlyRoot: false,
    });
  });

  it('says whether the root is read-only', () => {
    assert.equal(guestFilesystem({ root: { readonly: true } }, '/b').readonlyRoot, true);
    assert.equal(guestFilesystem({ root: {} }, '/b').readonlyRoot, false);
  });

  it('refuses a bind that would hide the rootfs, or that has no source', () => {
    assert.throws(
      () => guestFilesystem({ mounts: [{ destination: '/', type: 'bind', source: '/x' }] }, '/b'),
      /at \/: it would hide the container's rootfs/,
    );
    assert.throws(() => guestFilesystem({ mounts: [{ destination: '/x', type: 'bind' }] }, '/b'), /bind mount at \/x: it has no source/);
  });
});

describe('wasm guest paths', () => {
  let dir: string;
  let rootfs: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wasm-rootfs-path-'));
    rootfs = join(dir, 'rootfs');
    await mkdir(join(rootfs, 'etc'), { recursive: true });
    await writeFile(join(rootfs, 'etc/hosts'), 'image hosts');
    await writeFile(join(rootfs, 'file'), '');
    await symlink('/var/run', join(rootfs, 'run'));
    await symlink('../../../outside', join(rootfs, 'etc/up'));
    await symlink('missing/../target', join(rootfs, 'dangling'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('makes missing mount points inside the rootfs: directories on the way, then a file or a directory', async () => {
    assert.equal(await resolveInRootfs(rootfs, '/etc/hosts', 'm', { create: 'file' }), join(rootfs, 'etc/hosts'));
    assert.equal(await readFile(join(rootfs, 'etc/hosts'), 'utf8'), 'image hosts', 'an existing file is left as it is');
    assert.equal(await resolveInRootfs(rootfs, '/dev/termination-log', 'm', { create: 'file' }), join(rootfs, 'dev/termination-log'));
    assert.ok((await lstat(join(rootfs, 'dev/termination-log'))).isFile());
    assert.equal(await resolveInRootfs(rootfs, '/a/b/c', 'm', { create: 'directory' }), join(rootfs, 'a/b/c'));
    assert.ok((await lstat(join(rootfs, 'a/b/c'))).isDirectory());
  });

  it('follows links inside the rootfs while making them, never out of it', async () => {
    // /run -> /var/run: an absolute target starts at the rootfs.
    assert.equal(await resolveInRootfs(rootfs, '/run/secrets', 'm', { create: 'directory' }), join(rootfs, 'var/run/secrets'));
    // ../../../outside from /etc climbs no higher than the rootfs.
    assert.equal(await resolveInRootfs(rootfs, '/etc/up/x', 'm', { create: 'file' }), join(rootfs, 'outside/x'));
    await assert.rejects(lstat(join(dir, 'outside')), { code: 'ENOENT' });
    // A dangling link is made real where it points, inside the rootfs.
    assert.equal(await resolveInRootfs(rootfs, '/dangling', 'm', { create: 'directory' }), join(rootfs, 'target'));
    assert.ok((await lstat(join(rootfs, 'missing'))).isDirectory());
  });

  it('names the mount when its path cannot be made', async () => {
    await assert.rejects(
      resolveInRootfs(rootfs, '/file/x', 'mount at /file/x', { create: 'file' }),
      /^RuntimeError: mount at \/file\/x: a part of the path is not a directory/,
    );
    await assert.rejects(resolveInRootfs(rootfs, '/nope', 'mount at /nope'), /mount at \/nope: no such file in the container's image/);
  });

  it('refuses a mount whose source does not exist, before touching the rootfs', async () => {
    await assert.rejects(
      mountGuestFilesystem(
        rootfs,
        { directory: join(dir, 'no-rootfs-either') },
        { mounts: [{ destination: '/gone', source: join(dir, 'gone'), options: ['rbind'] }], readonlyRoot: false },
      ),
      { code: Code.FailedPrecondition, message: `mount at /gone: its source ${join(dir, 'gone')} does not exist` },
    );
    await assert.rejects(lstat(join(rootfs, 'gone')), { code: 'ENOENT' });
  });
});
