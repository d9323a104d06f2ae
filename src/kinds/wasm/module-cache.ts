// Compiled modules, shared by every instance of the same module under the same memory cap.
// V8 compiles off the main thread (WebAssembly.compile), and a compiled Module posted to a
// worker shares its machine code instead of compiling again: a container of a module already
// seen starts without compiling, and its instances' code is in memory once.
//
// Modules are keyed by the digest of their bytes (two images with the same module share it;
// a file changed in place is a new module), and the cap is part of the key because it rewrites
// the module before compilation (memory-cap.ts). What is compiled is the module's suspendable form
// (rewriter.ts), which the instances' threads need; it is made once per key.
//
// A file already read is known again by its identity (the stat its caller found it with), not
// read and digested again: containers of one image share the file, through a rootfs bound from
// one directory or an overlay whose lower layer holds it (overlay-layers.ts finds that file: each
// container's overlay is a device of its own). The read took four thread-pool round trips per
// Task Create (7-15 ms under load).
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { invalidArgument } from '../../base/errors.js';
import { capMemory, pagesWithin } from './memory-cap.js';
import type { Rewriter } from './rewriter.js';

interface Entry {
  module: Promise<WebAssembly.Module>;
  bytes: number;
}

/** File identities remembered at most, oldest dropped first: a container's rootfs may be a device of its own. */
const MAX_KNOWN_FILES = 4096;

export class ModuleCache {
  /** In use order, least recently used first (a Map iterates in insertion order). */
  private readonly entries = new Map<string, Entry>();
  /** File identity and cap -> the key of the module read from it (which may have been evicted since). */
  private readonly keysByFile = new Map<string, string>();
  private totalBytes = 0;

  /** @param capacityBytes the most module bytes kept compiled (the code takes a few times that). */
  constructor(
    private readonly capacityBytes: number,
    private readonly rewriter: Rewriter,
  ) {}

  /**
   * The module in `path`, its memory capped to fit `memoryLimit` bytes, compiled. `stats`: the
   * file's, if the caller has them already (the lookup that found it), else it is looked at.
   */
  async load(path: string, memoryLimit: number, stats?: BigIntStats): Promise<WebAssembly.Module> {
    const pages = pagesWithin(memoryLimit);
    const identity = fileIdentity(stats ?? (await stat(path, { bigint: true })));
    const file = `${identity.id} ${pages}`;
    const knownKey = this.keysByFile.get(file);
    const known = knownKey === undefined ? undefined : this.entries.get(knownKey);
    if (known) return this.use(knownKey!, known);
    const capped = capMemory(await readFile(path), pages);
    const key = createHash('sha256').update(capped).digest('hex');
    const entry = this.entries.get(key) ?? this.add(key, capped);
    if (identity.settled) this.remember(file, key);
    return this.use(key, entry);
  }

  private remember(file: string, key: string): void {
    this.keysByFile.delete(file);
    this.keysByFile.set(file, key);
    if (this.keysByFile.size > MAX_KNOWN_FILES) this.keysByFile.delete(this.keysByFile.keys().next().value!);
  }

  /** Marks `entry` the most recently used. */
  private use(key: string, entry: Entry): Promise<WebAssembly.Module> {
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.module;
  }

  private add(key: string, capped: Uint8Array): Entry {
    const entry: Entry = {
      module: this.compile(key, capped).catch((err: Error) => {
        this.forget(key);
        throw err;
      }),
      bytes: capped.length,
    };
    this.entries.set(key, entry);
    this.totalBytes += entry.bytes;
    this.evict(key);
    return entry;
  }

  private async compile(key: string, capped: Uint8Array): Promise<WebAssembly.Module> {
    // Checked here first, where the engine says what is wrong: the rewriter takes valid modules only.
    if (!WebAssembly.validate(capped)) {
      const err = await WebAssembly.compile(capped).then(
        () => new Error('refused by the engine'),
        (e: Error) => e,
      );
      throw invalidArgument(`not a valid WebAssembly module: ${err.message}`);
    }
    return WebAssembly.compile(await this.rewriter.suspendable(key, capped));
  }

  get size(): number {
    return this.entries.size;
  }

  /** Drops the least recently used modules until the rest fit (the newest always stays). */
  private evict(newest: string): void {
    for (const key of this.entries.keys()) {
      if (this.totalBytes <= this.capacityBytes || key === newest) return;
      this.forget(key);
    }
  }

  private forget(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.totalBytes -= entry.bytes;
  }
}

/**
 * A file changed this recently may change again under the same identity: file systems stamp
 * times from a clock that moves in ticks of a few milliseconds.
 */
const UNSETTLED_MS = 1000n;

/**
 * What tells one version of a file from every other: its inode on its device, its size, and its
 * change time, which every write and every replacement moves on (no call sets it back, unlike
 * the modification time). `settled`: the change is older than a clock tick, so a later one
 * cannot carry the same time (a file changed within UNSETTLED_MS is read again on each load).
 */
function fileIdentity({ dev, ino, size, ctimeNs }: BigIntStats): { id: string; settled: boolean } {
  const settled = ctimeNs < (BigInt(Date.now()) - UNSETTLED_MS) * 1_000_000n;
  return { id: `${dev}:${ino}:${size}:${ctimeNs}`, settled };
}
