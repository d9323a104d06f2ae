import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import wabt from 'wabt';
import { capMemory, encodeU32, readU32, WASM_PAGE_BYTES } from '../../src/kinds/wasm/memory-cap.js';

const compiler = await wabt();
const compile = (wat: string) => compiler.parseWat('t.wat', wat).toBinary({}).buffer;

/** Instantiates `module` and tries to grow its exported memory by `pages`: the old size, or -1. */
function growBy(module: Uint8Array, pages: number): number {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(module)) as unknown as {
    exports: { grow(pages: number): number; memory: WebAssembly.Memory };
  };
  return instance.exports.grow(pages);
}

const GROWER = (limits: string) =>
  compile(`(module (memory (export "memory") ${limits}) (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))`);

describe('capMemory', () => {
  it('round-trips LEB128 numbers', () => {
    for (const n of [0, 1, 127, 128, 300, 65_536, 2 ** 32 - 1])
      assert.deepEqual(readU32(encodeU32(n), 0), { value: n, next: encodeU32(n).length });
  });

  it('lets a memory with no maximum grow to the cap and no further', () => {
    const capped = capMemory(GROWER('1'), 4);
    assert.equal(growBy(capped, 3), 1, 'up to the cap');
    assert.equal(growBy(capped, 4), -1, 'past the cap');
    assert.equal(growBy(GROWER('1'), 4), 1, 'the original has no cap');
  });

  it('keeps a declared maximum below the cap', () => {
    const capped = capMemory(GROWER('1 2'), 100);
    assert.equal(growBy(capped, 2), -1);
    assert.equal(growBy(capped, 1), 1);
  });

  it('refuses a module whose initial memory is over the limit', () => {
    assert.throws(() => capMemory(GROWER('8'), 4), new RegExp(`needs ${8 * WASM_PAGE_BYTES} bytes of memory at start`));
  });

  it('leaves a module without memory as it was', () => {
    const module = compile('(module (func (export "f")))');
    assert.deepEqual(capMemory(module, 1), Buffer.from(module));
  });

  it('refuses bytes that are not a module', () => {
    assert.throws(() => capMemory(Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 5, 0x7f), 1), /not a WebAssembly module/);
  });
});
