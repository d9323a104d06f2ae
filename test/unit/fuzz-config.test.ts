// Fuzzing kuasard's configuration loader: arbitrary TOML text and arbitrary values under the
// known keys either load or fail with InvalidArgument whose message names the key (or says the
// file is not TOML), never with anything else.
// A failure prints fast-check's seed and path: FUZZ_SEED=<seed> FUZZ_PATH=<path> replays it.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { loadConfig, parseConfig } from '../../src/config/config.js';
import { Code, RuntimeError } from '../../src/base/errors.js';
import { fuzzParameters, hostileString } from '../../src/devenv/fuzz.js';

/** Every key of the schema by its dotted path, and a few that are not. */
const KEYS = [
  'state_dir',
  'log_level',
  'containerd.ttrpc_address',
  'kinds.runc.enabled',
  'kinds.runc.listen',
  'kinds.runc.io_type',
  'kinds.runc.oci_runtime',
  'kinds.wasm.enabled',
  'kinds.wasm.listen',
  'kinds.wasm.io_type',
  'kinds.wasm.default_memory_limit',
  'kinds.wasm.warm_workers',
  'kinds.wasm.module_cache_dir',
  'kinds.vmm.enabled',
  'containerd.address',
  'extra',
  '__proto__',
  'constructor',
];

/** TOML values as people write them, right and wrong for each key. */
const TOML_VALUE = fc.oneof(
  fc.constantFrom(
    'true',
    'false',
    '0',
    '-1',
    '65536',
    '268435456',
    '99999999999999999999',
    '1e3',
    'inf',
    'nan',
    '0x10',
    '"runc"',
    '"auto"',
    '"fifo"',
    '"streaming"',
    '"debug"',
    '"/run/kdev"',
    '"relative"',
    '""',
    '[1, 2]',
    '{ a = 1 }',
    '1979-05-27T07:32:00Z',
    `"/${'x'.repeat(120)}"`,
  ),
  hostileString.map((text) => JSON.stringify(text)),
);

/** A TOML document: assignments under dotted keys, now and then a table header or a stray line. */
const TOML_TEXT = fc
  .array(
    fc.oneof(
      { weight: 6, arbitrary: fc.tuple(fc.constantFrom(...KEYS), TOML_VALUE).map(([key, value]) => `${key} = ${value}`) },
      { weight: 1, arbitrary: fc.constantFrom('[kinds]', '[kinds.runc]', '[containerd]', '[[kinds]]', '[x') },
      { weight: 1, arbitrary: fc.string({ maxLength: 30 }) },
    ),
    { maxLength: 8 },
  )
  .map((lines) => lines.join('\n'));

/** A parsed document: values of any type under known and unknown keys, at any depth. */
const DOCUMENT: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 5, arbitrary: fc.dictionary(fc.constantFrom(...KEYS), fc.anything({ maxDepth: 2 }), { maxKeys: 6 }).map(nest) },
  { weight: 1, arbitrary: fc.anything({ maxDepth: 3 }) },
);

/** {"a.b": 1} → {a: {b: 1}}, as TOML's dotted keys do. */
function nest(flat: Record<string, unknown>): Record<string, unknown> {
  const doc: Record<string, unknown> = {};
  for (const [path, value] of Object.entries(flat)) {
    const keys = path.split('.');
    let table = doc;
    for (const key of keys.slice(0, -1)) {
      const next = Object.hasOwn(table, key) ? table[key] : undefined;
      if (typeof next !== 'object' || next === null) table[key] = {};
      table = table[key] as Record<string, unknown>;
    }
    Object.defineProperty(table, keys.at(-1)!, { value, enumerable: true, writable: true, configurable: true });
  }
  return doc;
}

/** The error must be InvalidArgument and name what is wrong: a key (or the top level), or the file. */
function assertClearError(err: unknown, names: readonly string[]): void {
  assert.ok(err instanceof RuntimeError, `not a RuntimeError: ${String(err)}`);
  assert.equal(err.code, Code.InvalidArgument, err.message);
  assert.ok(
    names.some((name) => err.message.includes(name)),
    `the message names none of ${names.join(', ')}: ${err.message}`,
  );
}

describe('configuration loader (fuzzed)', () => {
  let dir: string;
  let file = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kuasar-fuzz-config-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads arbitrary TOML or says which key is wrong, or that it is not TOML', async () => {
    await fc.assert(
      fc.asyncProperty(TOML_TEXT, async (text) => {
        const path = join(dir, `config-${++file}.toml`);
        await writeFile(path, text);
        try {
          await loadConfig(path);
        } catch (err) {
          assertClearError(err, ['is not valid TOML', '(top level)', ...KEYS.flatMap((key) => key.split('.'))]);
        }
      }),
      fuzzParameters(400),
    );
  });

  it('accepts or refuses arbitrary values under every key with InvalidArgument naming it', () => {
    fc.assert(
      fc.property(DOCUMENT, (doc) => {
        try {
          const config = parseConfig(doc);
          assert.ok(config.state_dir.startsWith('/'));
        } catch (err) {
          assertClearError(err, ['(top level)', ...KEYS.flatMap((key) => key.split('.'))]);
        }
      }),
      fuzzParameters(500),
    );
  });
});
