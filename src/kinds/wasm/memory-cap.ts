// Caps the linear memory a module declares: its memory section's maximum is lowered to the
// container's memory limit, so the engine itself refuses memory.grow beyond it (the module sees
// -1, as from a failed allocation) and nothing needs to watch the instance while it runs.
import { invalidArgument } from '../../base/errors.js';
import { WASM_PAGE_BYTES } from './wasi-imports.cjs';

export { WASM_PAGE_BYTES };

const MEMORY_SECTION = 5;
const HAS_MAX = 0x01;
const MEMORY64 = 0x04;

/** The number of whole pages that fit in `bytes` (at least one page is needed to run at all). */
export function pagesWithin(bytes: number): number {
  return Math.floor(bytes / WASM_PAGE_BYTES);
}

/**
 * The module with every memory it defines limited to `maxPages`. A module whose initial memory
 * is already over the limit cannot run within it: that is an error. Imported memories are left
 * alone (WASI provides none, so such a module does not instantiate anyway).
 */
export function capMemory(module: Uint8Array, maxPages: number): Uint8Array {
  if (module.length < 8) throw invalidArgument('not a WebAssembly module (too short)');
  const parts: Uint8Array[] = [module.subarray(0, 8)];
  let at = 8;
  while (at < module.length) {
    const start = at;
    const id = module[at++]!;
    const size = readU32(module, at);
    const contentStart = size.next;
    const end = contentStart + size.value;
    if (end > module.length) throw invalidArgument('not a WebAssembly module (a section runs past its end)');
    if (id === MEMORY_SECTION) {
      const content = capMemorySection(module.subarray(contentStart, end), maxPages);
      parts.push(Uint8Array.of(id), encodeU32(content.length), content);
    } else {
      parts.push(module.subarray(start, end));
    }
    at = end;
  }
  return Buffer.concat(parts);
}

function capMemorySection(section: Uint8Array, maxPages: number): Uint8Array {
  const count = readU32(section, 0);
  let at = count.next;
  const out: Uint8Array[] = [encodeU32(count.value)];
  for (let i = 0; i < count.value; i++) {
    const flags = section[at++]!;
    if (flags & MEMORY64) throw invalidArgument('64-bit memories are not supported by the wasm kind');
    const min = readU32(section, at);
    at = min.next;
    let max = Number.POSITIVE_INFINITY;
    if (flags & HAS_MAX) {
      const declared = readU32(section, at);
      at = declared.next;
      max = declared.value;
    }
    if (min.value > maxPages) {
      throw invalidArgument(
        `the module needs ${min.value * WASM_PAGE_BYTES} bytes of memory at start, over the container's limit of ${maxPages * WASM_PAGE_BYTES}`,
      );
    }
    out.push(Uint8Array.of(flags | HAS_MAX), encodeU32(min.value), encodeU32(Math.min(max, maxPages)));
  }
  if (at !== section.length) throw invalidArgument('not a WebAssembly module (a malformed memory section)');
  return Buffer.concat(out);
}

/** An unsigned LEB128 number of at most 32 bits at `at`, and where the next field starts. */
export function readU32(bytes: Uint8Array, at: number): { value: number; next: number } {
  let value = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    if (at >= bytes.length) break;
    const byte = bytes[at++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return { value, next: at };
  }
  throw invalidArgument('not a WebAssembly module (a malformed number)');
}

export function encodeU32(value: number): Uint8Array {
  const out: number[] = [];
  do {
    let byte = value & 0x7f;
    value = Math.floor(value / 128);
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
  return Uint8Array.from(out);
}
