import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { type CpioEntry, writeCpio } from '../../src/guest/image/cpio.js';
import { bzImagePayload, debFileName, parseKernelDependency } from '../../src/guest/image/kernel.js';
import { checkImageDir, IMAGE_FILES } from '../../src/guest/image/layout.js';
import { moduleLoadOrder } from '../../src/guest/image/modules.js';
import { parseLddOutput } from '../../src/guest/image/shared-libs.js';

/** The 13 header fields of the newc record at `offset`, as numbers, and its name. */
function readHeader(archive: Buffer, offset: number): { fields: number[]; name: string } {
  assert.equal(archive.toString('ascii', offset, offset + 6), '070701');
  const fields = Array.from({ length: 13 }, (_, i) =>
    Number.parseInt(archive.toString('ascii', offset + 6 + i * 8, offset + 14 + i * 8), 16),
  );
  const nameSize = fields[11]!;
  return { fields, name: archive.toString('utf8', offset + 110, offset + 110 + nameSize - 1) };
}

describe('writeCpio (newc)', () => {
  it('lays out header, name and data on four-byte boundaries, and ends with the trailer', () => {
    const archive = writeCpio([{ type: 'file', path: '/a', mode: 0o755, data: Buffer.from('xyz') }], 1234);
    // header 110 + "a\0" = 112 (aligned), data 3 + 1 pad = 116, then the trailer record.
    const file = readHeader(archive, 0);
    assert.equal(file.name, 'a', 'the leading slash is dropped');
    //                  ino mode      uid gid nlink mtime filesize devmaj devmin rdevmaj rdevmin namesize check
    assert.deepEqual(file.fields, [1, 0o100755, 0, 0, 1, 1234, 3, 0, 0, 0, 0, 2, 0]);
    assert.equal(archive.toString('ascii', 112, 115), 'xyz');
    assert.equal(archive[115], 0);
    const trailer = readHeader(archive, 116);
    assert.equal(trailer.name, 'TRAILER!!!');
    // 110 + 11 = 121, padded to 124; the trailer has no data.
    assert.equal(archive.length, 116 + 124);
  });

  it('writes directories, symlinks (target as data) and device nodes', () => {
    const archive = writeCpio(
      [
        { type: 'dir', path: 'dev', mode: 0o755 },
        { type: 'chardev', path: 'dev/console', mode: 0o600, major: 5, minor: 1 },
        { type: 'symlink', path: 'sh', target: 'busybox' },
      ],
      0,
    );
    const dir = readHeader(archive, 0);
    assert.deepEqual([dir.fields[0], dir.fields[1], dir.fields[4]], [1, 0o040755, 2]);
    const console = readHeader(archive, 116); // 110 + "dev\0" = 114 -> 116
    assert.equal(console.name, 'dev/console');
    assert.deepEqual([console.fields[0], console.fields[1], console.fields[9], console.fields[10]], [2, 0o020600, 5, 1]);
    const link = readHeader(archive, 116 + 124); // 110 + 12 = 122 -> 124
    assert.equal(link.name, 'sh');
    assert.equal(link.fields[1], 0o120777);
    assert.equal(link.fields[6], 'busybox'.length);
    assert.equal(archive.toString('ascii', 240 + 116, 240 + 116 + 7), 'busybox');
  });

  it('gives the same bytes for the same entries', () => {
    const entries: CpioEntry[] = [
      { type: 'dir', path: 'bin', mode: 0o755 },
      { type: 'file', path: 'bin/x', mode: 0o644, data: Buffer.from('hello') },
    ];
    assert.deepEqual(writeCpio(entries, 7), writeCpio(entries, 7));
  });

  it('is read back by GNU cpio', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kuasar-cpio-'));
    try {
      const archive = writeCpio(
        [
          { type: 'dir', path: 'bin', mode: 0o755 },
          { type: 'file', path: 'bin/busybox', mode: 0o755, data: Buffer.from('#!/bin/true\n') },
          { type: 'symlink', path: 'bin/sh', target: 'busybox' },
          { type: 'file', path: 'init', mode: 0o700, data: Buffer.alloc(1001, 7) },
        ],
        86400,
      );
      execFileSync('cpio', ['-i', '-d', '-m', '--quiet'], { cwd: dir, input: archive });
      assert.equal(readFileSync(join(dir, 'bin/busybox'), 'utf8'), '#!/bin/true\n');
      assert.equal(lstatSync(join(dir, 'bin/busybox')).mode & 0o777, 0o755);
      assert.equal(lstatSync(join(dir, 'bin/busybox')).mtimeMs, 86400_000);
      assert.equal(readlinkSync(join(dir, 'bin/sh')), 'busybox');
      assert.deepEqual(readFileSync(join(dir, 'init')), Buffer.alloc(1001, 7));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a value that does not fit a header field', () => {
    assert.throws(() => writeCpio([{ type: 'file', path: 'a', mode: 0o644, data: Buffer.alloc(0) }], -1), RangeError);
  });
});

describe('moduleLoadOrder', () => {
  // The guest's modules as Debian 6.1's modinfo names their dependencies.
  const deps: Record<string, string[]> = {
    virtio_ring: [],
    virtio: ['virtio_ring'],
    virtio_pci_modern_dev: [],
    virtio_pci_legacy_dev: [],
    virtio_pci: ['virtio_ring', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio'],
    virtio_blk: ['virtio', 'virtio_ring'],
    netfs: [],
    fscache: ['netfs'],
    '9pnet': [],
    '9pnet_virtio': ['virtio', '9pnet', 'virtio_ring'],
    '9p': ['9pnet', 'fscache', 'netfs'],
    failover: [],
    net_failover: ['failover'],
    virtio_net: ['virtio_ring', 'virtio', 'net_failover'],
  };
  const dependsOf = (name: string): string[] => {
    const d = deps[name];
    if (!d) throw new Error(`unknown ${name}`);
    return d;
  };

  it('puts every module after its dependencies, each once', () => {
    const order = moduleLoadOrder(['virtio_pci', 'virtio_blk', '9pnet_virtio', '9p', 'virtio_net'], dependsOf);
    assert.equal(new Set(order).size, order.length);
    assert.deepEqual(new Set(order), new Set(Object.keys(deps)));
    for (const name of order) for (const dep of deps[name]!) assert.ok(order.indexOf(dep) < order.indexOf(name), `${dep} before ${name}`);
    assert.deepEqual(order.slice(0, 5), ['virtio_ring', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio', 'virtio_pci']);
  });

  it('treats - and _ in names alike', () => {
    assert.deepEqual(
      moduleLoadOrder(['virtio-blk'], (name) => (name === 'virtio_blk' ? ['virtio-ring'] : [])),
      ['virtio_ring', 'virtio_blk'],
    );
  });

  it('names a dependency cycle', () => {
    assert.throws(() => moduleLoadOrder(['a'], (name) => (name === 'a' ? ['b'] : ['a'])), /cycle: a -> b -> a/);
  });
});

describe('image builder parsers', () => {
  it('finds the libraries and the loader in ldd output, not the vDSO', () => {
    const output = [
      '\tlinux-vdso.so.1 (0x00007ffd5d1f2000)',
      '\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007fd055400000)',
      '\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fd05521e000)',
      '\t/lib64/ld-linux-x86-64.so.2 (0x00007fd055747000)',
    ].join('\n');
    assert.deepEqual(parseLddOutput(output), [
      '/lib/x86_64-linux-gnu/libstdc++.so.6',
      '/lib/x86_64-linux-gnu/libc.so.6',
      '/lib64/ld-linux-x86-64.so.2',
    ]);
    assert.throws(() => parseLddOutput('\tlibseccomp.so.2 => not found'), /missing shared library/);
  });

  it("finds the versioned kernel package linux-image-amd64 depends on, and its .deb's name", () => {
    assert.equal(parseKernelDependency('linux-image-amd64\n  Depends: linux-image-6.1.0-57-amd64\n'), 'linux-image-6.1.0-57-amd64');
    assert.throws(() => parseKernelDependency('linux-image-amd64\n'), /depends on no linux-image package/);
    assert.equal(debFileName('linux-image-6.1.0-57-amd64', '1:6.1.192-3'), 'linux-image-6.1.0-57-amd64_1%3a6.1.192-3_amd64.deb');
  });
});

describe('checkImageDir', () => {
  it('names the missing files and the command that builds them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kuasar-image-'));
    try {
      const check = await checkImageDir(dir);
      assert.equal(check.complete, false);
      assert.deepEqual(check.missing, Object.values(IMAGE_FILES));
      assert.equal(check.fix, `kuasar image build --out ${dir}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('bzImagePayload', () => {
  /** A bzImage-shaped buffer: `setupSectors` setup sectors, then the payload at `offset` in the protected-mode part. */
  function fakeBzImage(setupSectors: number, offset: number, payload: Buffer): Buffer {
    const start = (setupSectors + 1) * 512;
    const image = Buffer.alloc(start + offset + payload.length + 16);
    image[0x1f1] = setupSectors;
    image.write('HdrS', 0x202, 'ascii');
    image.writeUInt32LE(offset, 0x248);
    image.writeUInt32LE(payload.length, 0x24c);
    payload.copy(image, start + offset);
    return image;
  }
  const xzPayload = Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.from('stream')]);

  it('finds the payload the boot header points at', () => {
    assert.deepEqual(bzImagePayload(fakeBzImage(27, 0x3b4, xzPayload)), xzPayload);
    // setup_sects 0 means 4, as old boot loaders assumed.
    const zero = fakeBzImage(4, 0x10, xzPayload);
    zero[0x1f1] = 0;
    assert.deepEqual(bzImagePayload(zero), xzPayload);
  });

  it('refuses what is not a bzImage or not xz', () => {
    assert.throws(() => bzImagePayload(Buffer.alloc(4096)), /not a bzImage/);
    assert.throws(() => bzImagePayload(fakeBzImage(27, 0, Buffer.from('gzip?'))), /not xz-compressed/);
  });
});
