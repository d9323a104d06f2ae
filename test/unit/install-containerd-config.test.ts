// kuasar's block in containerd's configuration file (src/install/containerd-config.ts): taking it
// out gives back every byte of what it was appended to, whatever that ends with; a second merge
// changes nothing; and the files kuasar's tables cannot join are refused with the reason.
// A failure of the property prints fast-check's seed and path: FUZZ_SEED=<seed> FUZZ_PATH=<path> replays it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fuzzParameters } from '../../src/devenv/fuzz.js';
import { appendBlock, BLOCK_BEGIN, BLOCK_END, mergeConfig, splitConfig, ttrpcAddress } from '../../src/install/containerd-config.js';

const TABLES = `[proxy_plugins.'kuasar-runc']
  type = "sandbox"
  address = "/run/kuasar/runc.sock"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.'kuasar-runc']
  runtime_type = "io.containerd.runc.v2"
  sandboxer = "kuasar-runc"
  io_type = ""
`;
const FILE = '/etc/containerd/config.toml';
const merge = (current: string) => mergeConfig({ current, tables: TABLES, names: ['kuasar-runc'], file: FILE });

const V3 = `version = 3

[plugins]
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'
`;

describe("kuasar's block in containerd's configuration", () => {
  it('splitting the block off gives back exactly the text it was appended to (any text, any ending)', () => {
    // Lines and line endings are what the split looks at: texts made mostly of them, and any text.
    const lineish = fc
      .array(fc.constantFrom('\n', '\r\n', '#', ' ', 'version = 3', '[plugins]', '# <<<', '>>>'))
      .map((parts) => parts.join(''));
    const text = fc.oneof(lineish, fc.string({ unit: 'binary' })).filter((own) => !own.includes(BLOCK_BEGIN) && !own.includes(BLOCK_END));
    fc.assert(
      fc.property(text, (own) => {
        const split = splitConfig(appendBlock(own, TABLES), FILE);
        assert.equal(split.own, own);
        assert.ok(split.block?.startsWith(`${BLOCK_BEGIN}\n`) && split.block.endsWith(`${BLOCK_END}\n`));
      }),
      fuzzParameters(500),
    );
    for (const own of ['', 'version = 3', 'version = 3\n', 'version = 3\n\n\n'])
      assert.equal(splitConfig(appendBlock(own, TABLES), FILE).own, own);
  });

  it('merges into a version 3 file once: the second merge changes nothing, new tables replace the block in place', () => {
    const first = merge(V3);
    assert.equal(first.first, true);
    assert.equal(first.changed, true);
    assert.equal(first.text, `${V3}\n${BLOCK_BEGIN}\n${TABLES}${BLOCK_END}\n`);
    const second = merge(first.text);
    assert.deepEqual(second, { text: first.text, own: V3, changed: false, first: false });

    const moved = mergeConfig({
      current: first.text,
      tables: TABLES.replace('/run/kuasar/runc.sock', '/run/k/runc.sock'),
      names: ['kuasar-runc'],
      file: FILE,
    });
    assert.equal(moved.changed, true);
    assert.equal(moved.first, false, 'no new backup: the file still holds an earlier block');
    assert.equal(splitConfig(moved.text, FILE).own, V3);
  });

  it('keeps what the operator wrote after the block, and takes only the block out', () => {
    const edited = `${merge(V3).text}[debug]\n  level = 'debug'\n`;
    assert.equal(splitConfig(edited, FILE).own, `${V3}[debug]\n  level = 'debug'\n`);
  });

  it('refuses a damaged block: one marker alone, two blocks, markers in the wrong order', () => {
    const block = `${BLOCK_BEGIN}\n${TABLES}${BLOCK_END}\n`;
    for (const damaged of [
      `${V3}${BLOCK_BEGIN}\n`,
      `${V3}${BLOCK_END}\n`,
      `${V3}${block}${block}`,
      `${V3}${BLOCK_END}\n${BLOCK_BEGIN}\n`,
    ]) {
      assert.throws(() => splitConfig(damaged, FILE), /holds a damaged kuasar block/);
    }
    // A marker inside a line is not a marker.
    assert.equal(splitConfig(`# see "${BLOCK_END}"\n`, FILE).block, undefined);
  });

  it('refuses files the tables cannot join, and says why', () => {
    assert.throws(() => merge('version = 3\n[plugins\n'), /is not valid TOML/);
    assert.throws(
      () => merge('version = 2\n'),
      /version 2; kuasar registers itself in version 3: containerd 2.x converts it: `containerd --config \/etc\/containerd\/config.toml config migrate > /,
    );
    assert.throws(() => merge("version = '3'\n"), /version "3";/, 'a string is not the number 3');
    assert.throws(() => merge(`${V3}[proxy_plugins.'kuasar-runc']\n  type = "sandbox"\n`), /defines kuasar-runc outside kuasar's block/);
    assert.throws(
      () => merge("version = 3\nproxy_plugins = { other = { type = 'snapshot', address = '/x' } }\n"),
      /kuasar's tables cannot be added to .*not inline tables/,
    );
  });

  it("finds containerd's ttrpc socket as containerd does: its own setting, else the gRPC socket's path + .ttrpc", () => {
    assert.equal(ttrpcAddress("[ttrpc]\n  address = '/x/ttrpc'\n[grpc]\n  address = '/x/grpc'\n", FILE), '/x/ttrpc');
    assert.equal(ttrpcAddress("[ttrpc]\n  address = ''\n[grpc]\n  address = '/x/grpc'\n", FILE), '/x/grpc.ttrpc');
    assert.equal(ttrpcAddress('version = 3\n', FILE), undefined);
  });
});
