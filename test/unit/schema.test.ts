import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as check from '../../src/base/schema.js';

/** The issues of a value the schema refuses, as "path: message" lines. */
function refusal(schema: check.Schema<unknown>, value: unknown): string[] {
  const result = schema.safeParse(value);
  assert.equal(result.success, false, `accepted ${JSON.stringify(value)}`);
  return result.success ? [] : result.issues.map((issue) => check.describeIssue(issue));
}

describe('schema checks', () => {
  const table = check.strictObject({
    name: check.string().min(1),
    port: check.number().int().min(1).max(65535).default(80),
    mode: check.oneOf(['a', 'b']).optional(),
    tags: check.array(check.string().regex(/^[a-z]+$/, 'lowercase letters only')).default([]),
    nested: check.object({ on: check.boolean().nullable().default(null) }).orDefaults(),
  });

  it('fills defaults, keeps what is given and leaves absent optional keys out', () => {
    assert.deepEqual(table.parse({ name: 'x', nested: { on: null } }), { name: 'x', port: 80, tags: [], nested: { on: null } });
    assert.deepEqual(table.parse({ name: 'x', port: 8080, mode: 'b', tags: ['ok'], nested: { on: true } }), {
      name: 'x',
      port: 8080,
      mode: 'b',
      tags: ['ok'],
      nested: { on: true },
    });
  });

  it('names every problem with its path, and never coerces', () => {
    assert.deepEqual(refusal(table, { name: '', port: '80', mode: 'c', tags: ['ok', 'NO'], nested: { on: 1 }, extra: 1 }), [
      'name: must be at least 1 character long',
      'port: expected a number, got a string',
      'mode: must be one of "a", "b"',
      'tags.1: lowercase letters only',
      'nested.on: expected a boolean, got a number',
      '(top level): unknown key "extra"',
    ]);
    assert.deepEqual(refusal(table, { name: 'x', port: 1.5 }), ['port: must be an integer']);
    assert.deepEqual(refusal(table, { name: 'x', port: 70000 }), ['port: must be at most 65535']);
    assert.deepEqual(refusal(table, { name: 'x', port: Number.NaN }), ['port: expected a number, got a number']);
    assert.deepEqual(refusal(table, []), ['(top level): expected an object, got an array']);
    assert.deepEqual(refusal(table, {}), ['name: expected a string, got nothing']);
  });

  it('drops unknown keys of a lenient object, checks records, literals and unions', () => {
    assert.deepEqual(check.object({ a: check.number() }).parse({ a: 1, b: 2 }), { a: 1 });
    const labels = check.record(check.string());
    assert.deepEqual(labels.parse({ k: 'v' }), { k: 'v' });
    assert.deepEqual(refusal(labels, { k: 1 }), ['k: expected a string, got a number']);
    const enabled = check.union([check.literal('auto'), check.boolean()], '"auto", true or false');
    assert.equal(enabled.parse('auto'), 'auto');
    assert.equal(enabled.parse(false), false);
    assert.deepEqual(refusal(enabled, 'on'), ['(top level): expected "auto", true or false']);
  });

  it('refines, transforms (an Error thrown is an issue), extends, and parse() throws the first issue', () => {
    const even = check.number().refine((n) => n % 2 === 0, 'must be even');
    assert.deepEqual(refusal(even, 3), ['(top level): must be even']);
    const port = check.string().transform((text) => {
      const n = Number(text);
      if (!Number.isInteger(n)) throw new Error(`not a port: ${text}`);
      return n;
    });
    assert.equal(port.parse('22'), 22);
    assert.deepEqual(refusal(port, 'ssh'), ['(top level): not a port: ssh']);
    const wider = check.strictObject({ a: check.number() }).extend({ b: check.string().default('x') });
    assert.deepEqual(wider.parse({ a: 1 }), { a: 1, b: 'x' });
    assert.deepEqual(refusal(check.array(check.number()).min(1, 'empty'), []), ['(top level): empty']);
    assert.throws(
      () => wider.parse({ a: 'one' }),
      (err: unknown) => err instanceof check.SchemaError && err.message === 'a: expected a number, got a string',
    );
    assert.equal(check.isoDatetime().safeParse('2025-01-01T00:00:00.000Z').success, true);
    assert.equal(check.isoDatetime().safeParse('yesterday').success, false);
  });
});
