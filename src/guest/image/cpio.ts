// A writer of "newc" cpio archives, the format the kernel unpacks an initramfs from
// (Documentation/driver-api/early-userspace/buffer-format.rst). Entries are written in the order
// given with inode numbers counted from 1, owner root, one fixed mtime and no hard links: the
// same entries always give the same bytes, so the initramfs is reproducible.

export type CpioEntry =
  | { type: 'dir'; path: string; mode: number }
  | { type: 'file'; path: string; mode: number; data: Uint8Array }
  | { type: 'symlink'; path: string; target: string }
  | { type: 'chardev'; path: string; mode: number; major: number; minor: number };

const MAGIC = '070701';
const HEADER_SIZE = 110;
const TRAILER = 'TRAILER!!!';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

interface Header {
  ino: number;
  mode: number;
  nlink: number;
  mtime: number;
  fileSize: number;
  rdevMajor: number;
  rdevMinor: number;
  nameSize: number;
}

const hex8 = (value: number): string => {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new RangeError(`cpio: ${value} does not fit a header field`);
  return value.toString(16).padStart(8, '0');
};

function headerBytes(h: Header): Buffer {
  // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
  const fields = [h.ino, h.mode, 0, 0, h.nlink, h.mtime, h.fileSize, 0, 0, h.rdevMajor, h.rdevMinor, h.nameSize, 0];
  return Buffer.from(MAGIC + fields.map(hex8).join(''), 'ascii');
}

/** Zero bytes that bring `length` to a multiple of four (the format aligns names and data so). */
const padTo4 = (length: number): Buffer => Buffer.alloc((4 - (length % 4)) % 4);

function record(h: Omit<Header, 'nameSize' | 'fileSize'>, name: string, data: Uint8Array): Buffer[] {
  // Paths in an initramfs are relative to its root: the kernel takes "bin/sh", not "/bin/sh".
  const nameBytes = Buffer.from(`${name.replace(/^\/+/, '')}\0`, 'utf8');
  const header = headerBytes({ ...h, nameSize: nameBytes.length, fileSize: data.length });
  return [header, nameBytes, padTo4(HEADER_SIZE + nameBytes.length), Buffer.from(data), padTo4(data.length)];
}

function modeOf(entry: CpioEntry): number {
  switch (entry.type) {
    case 'dir':
      return S_IFDIR | entry.mode;
    case 'file':
      return S_IFREG | entry.mode;
    case 'symlink':
      return S_IFLNK | 0o777;
    case 'chardev':
      return S_IFCHR | entry.mode;
  }
}

function dataOf(entry: CpioEntry): Uint8Array {
  if (entry.type === 'file') return entry.data;
  if (entry.type === 'symlink') return Buffer.from(entry.target, 'utf8');
  return new Uint8Array(0);
}

/** The archive of `entries` (parents before children is the caller's business), ending with the trailer. */
export function writeCpio(entries: readonly CpioEntry[], mtime: number): Buffer {
  const parts: Buffer[] = [];
  entries.forEach((entry, index) => {
    const isDevice = entry.type === 'chardev';
    const h = {
      ino: index + 1,
      mode: modeOf(entry),
      nlink: entry.type === 'dir' ? 2 : 1,
      mtime,
      rdevMajor: isDevice ? entry.major : 0,
      rdevMinor: isDevice ? entry.minor : 0,
    };
    parts.push(...record(h, entry.path, dataOf(entry)));
  });
  parts.push(...record({ ino: 0, mode: 0, nlink: 1, mtime: 0, rdevMajor: 0, rdevMinor: 0 }, TRAILER, new Uint8Array(0)));
  return Buffer.concat(parts);
}
