import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { envObject, parseModuleArg, wasmLaunch } from '../../src/kinds/wasm/launch.js';

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

  it('resolves the module against the working directory, preopens the rootfs and directory binds', async () => {
    const launch = await wasmLaunch(
      {
        process: { args: ['m.wasm#run', 'x'], env: ['K=v'], cwd: '/app' },
        mounts: [
          { destination: '/data', type: 'bind', source: volume, options: ['rbind'] },
          { destination: '/etc/hosts', type: 'bind', source: join(rootfs, 'app/m.wasm'), options: ['rbind'] },
          { destination: '/proc', type: 'proc', source: 'proc' },
        ],
        linux: { resources: { memory: { limit: 1 << 20 } } },
      },
      rootfs,
    );
    assert.deepEqual(launch, {
      modulePath: join(rootfs, 'app/m.wasm'),
      entry: 'run',
      args: ['m.wasm', 'x'],
      env: { K: 'v', PWD: '/app' },
      preopens: { '/': rootfs, '/data': volume },
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
