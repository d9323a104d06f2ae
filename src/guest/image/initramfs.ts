// The initramfs (initrd.img): busybox, the kernel modules the guest needs and /init, as a newc
// cpio archive written here, so that the same inputs give the same bytes.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { gzipSync } from 'node:zlib';
import { type CpioEntry, writeCpio } from './cpio.js';
import { INIT_APPLETS, INIT_SCRIPT, MODULE_ORDER_FILE } from './init-script.js';

export interface InitramfsInputs {
  /** A statically linked busybox. */
  busybox: string;
  /** The module files, in load order. */
  modules: readonly string[];
  /** The mtime of every entry (SOURCE_DATE_EPOCH). */
  mtime: number;
}

const DIRS = ['bin', 'dev', 'lib', 'lib/modules', 'newroot', 'proc', 'sys'];

/** The archive's entries, parents first. */
export async function initramfsEntries(inputs: InitramfsInputs): Promise<CpioEntry[]> {
  const entries: CpioEntry[] = DIRS.map((path) => ({ type: 'dir', path, mode: 0o755 }));
  // The kernel opens /dev/console for /init's stdin, stdout and stderr before /init runs.
  entries.push({ type: 'chardev', path: 'dev/console', mode: 0o600, major: 5, minor: 1 });
  entries.push({ type: 'file', path: 'bin/busybox', mode: 0o755, data: await readFile(inputs.busybox) });
  for (const applet of INIT_APPLETS) entries.push({ type: 'symlink', path: `bin/${applet}`, target: 'busybox' });
  const names = inputs.modules.map((file) => basename(file));
  if (new Set(names).size !== names.length) throw new Error(`two kernel modules share a file name: ${names.join(', ')}`);
  for (const file of inputs.modules) {
    entries.push({ type: 'file', path: `lib/modules/${basename(file)}`, mode: 0o644, data: await readFile(file) });
  }
  entries.push({ type: 'file', path: MODULE_ORDER_FILE, mode: 0o644, data: Buffer.from(names.map((n) => `${n}\n`).join('')) });
  entries.push({ type: 'file', path: 'init', mode: 0o755, data: Buffer.from(INIT_SCRIPT) });
  return entries;
}

/** initrd.img's bytes: the cpio archive, gzip-compressed (the kernel unpacks gzip itself). */
export async function buildInitramfs(inputs: InitramfsInputs): Promise<Buffer> {
  return gzipSync(writeCpio(await initramfsEntries(inputs), inputs.mtime), { level: 9 });
}
