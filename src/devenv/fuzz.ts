// What the fuzz tests share: fast-check's run settings and arbitrary protobuf requests.
//
// A failing property prints its seed and path (fast-check's failure message); FUZZ_SEED=<seed>
// and FUZZ_PATH=<path> replay exactly that run, FUZZ_RUNS=<n> runs more (or fewer) inputs than a
// test's modest default, which keeps the unit suite fast.
import { ScalarType, create, toBinary, type DescField, type DescMessage } from '@bufbuild/protobuf';
import type * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { RequestSchema } from '../api/ttrpc/ttrpc_pb.js';
import { Code } from '../base/errors.js';
import { FrameType, encodeHeader } from '../rpc/ttrpc/frame.js';

/**
 * The seed of every fuzz run in this process: FUZZ_SEED, or one drawn at start. One seed for
 * all, so that a test that samples inputs itself (and prints the seed) can be replayed whole.
 */
export const FUZZ_SEED = fuzzSeed();

/** fast-check parameters: `runs` inputs unless FUZZ_RUNS says otherwise, FUZZ_SEED/FUZZ_PATH to replay. */
export function fuzzParameters<T>(runs: number): fc.Parameters<T> {
  const parameters: fc.Parameters<T> = { numRuns: positiveInteger('FUZZ_RUNS') ?? runs, seed: FUZZ_SEED };
  if (process.env['FUZZ_SEED'] && process.env['FUZZ_PATH']) parameters.path = process.env['FUZZ_PATH'];
  return parameters;
}

function fuzzSeed(): number {
  const seed = process.env['FUZZ_SEED'];
  if (!seed) return Math.floor(Math.random() * 2 ** 31);
  const number = Number(seed);
  if (!Number.isInteger(number)) throw new Error(`FUZZ_SEED=${seed}: not an integer`);
  return number;
}

function positiveInteger(name: string): number | undefined {
  const value = process.env[name];
  if (!value) return undefined;
  const number = Number(value);
  if (!Number.isInteger(number) || number <= 0) throw new Error(`${name}=${value}: not a positive integer`);
  return number;
}

/**
 * The codes a caller can act on, which every answer to hostile input must carry: Internal or
 * Unknown would mean a bug on our side.
 */
export const ACTIONABLE_CODES: ReadonlySet<Code> = new Set([
  Code.OK,
  Code.InvalidArgument,
  Code.NotFound,
  Code.AlreadyExists,
  Code.FailedPrecondition,
  Code.Unimplemented,
  Code.DeadlineExceeded,
  Code.ResourceExhausted,
]);

/**
 * Strings as a hostile or careless client sends them: ids that exist in the fixtures ("c1",
 * "e1", "pod"), identifiers just off the rules (empty, "..", too long, NUL, slashes), paths,
 * and anything at all.
 */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('c1', 'e1', 'pod', 'pod-1', '', '.', '..', '../escape', 'a/b', '/', '/bundle', 'x'.repeat(300), 'a\0b', ' c1', 'C1'),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
);

export interface MessageArbitraryOptions {
  /**
   * Types an Any field may carry (encoded as protobuf, under their full name or a
   * type.googleapis.com/ URL); an Any may also carry JSON (as containerd packs OCI specs, under
   * `jsonTypeUrls`) or plain garbage.
   */
  anyTypes?: readonly DescMessage[];
  jsonTypeUrls?: readonly string[];
  /** Nesting below which message fields are left unset. */
  maxDepth?: number;
}

/** Arbitrary messages of `schema` (every field set or not, values from the edges of their type), as init objects. */
export function messageArbitrary(schema: DescMessage, options: MessageArbitraryOptions = {}): fc.Arbitrary<Record<string, unknown>> {
  return messageOf(schema, options, options.maxDepth ?? 3);
}

/** Request bytes for `schema`: mostly well-formed messages with hostile values, some plain garbage. */
export function requestBytes(schema: DescMessage, options: MessageArbitraryOptions = {}): fc.Arbitrary<Uint8Array> {
  return fc.oneof(
    { weight: 4, arbitrary: messageArbitrary(schema, options).map((init) => toBinary(schema, create(schema, init))) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 256 }) },
  );
}

function messageOf(schema: DescMessage, options: MessageArbitraryOptions, depth: number): fc.Arbitrary<Record<string, unknown>> {
  if (schema.typeName === 'google.protobuf.Any') return anyOf(options, depth);
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  for (const field of schema.fields) {
    // Members of a oneof take a {case, value} shape: left unset, as any oneof may be.
    if (field.oneof) continue;
    const arbitrary = fieldOf(field, options, depth);
    if (arbitrary) fields[field.localName] = arbitrary;
  }
  return fc.record(fields, { requiredKeys: [] });
}

function fieldOf(field: DescField, options: MessageArbitraryOptions, depth: number): fc.Arbitrary<unknown> | undefined {
  switch (field.fieldKind) {
    case 'scalar':
      return valueArbitrary(field.scalar, options, depth);
    case 'enum':
      return valueArbitrary('enum', options, depth);
    case 'message':
      return valueArbitrary(field.message, options, depth);
    case 'list': {
      const element = valueArbitrary(
        field.listKind === 'scalar' ? field.scalar : field.listKind === 'enum' ? 'enum' : field.message,
        options,
        depth,
      );
      return element && fc.array(element, { maxLength: 4 });
    }
    case 'map': {
      if (field.mapKey !== ScalarType.STRING) return undefined;
      const value = valueArbitrary(
        field.mapKind === 'scalar' ? field.scalar : field.mapKind === 'enum' ? 'enum' : field.message,
        options,
        depth,
      );
      return value && fc.dictionary(hostileString, value, { maxKeys: 4 });
    }
  }
}

/** One value of a field, a list element or a map value: a scalar, an enum number, or a nested message. */
function valueArbitrary(
  type: ScalarType | 'enum' | DescMessage,
  options: MessageArbitraryOptions,
  depth: number,
): fc.Arbitrary<unknown> | undefined {
  if (type === 'enum') return fc.integer({ min: -2, max: 40 }); // open enums: values nobody declared arrive too
  if (typeof type === 'object') return depth > 0 ? messageOf(type, options, depth - 1) : undefined;
  return scalarOf(type);
}

function scalarOf(type: ScalarType): fc.Arbitrary<unknown> {
  switch (type) {
    case ScalarType.STRING:
      return hostileString;
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 64 });
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return fc.oneof(fc.constantFrom(0, 1, -1, 2 ** 31 - 1, -(2 ** 31)), fc.integer());
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fc.oneof(fc.constantFrom(0, 1, 9, 15, 2 ** 32 - 1), fc.integer({ min: 0, max: 2 ** 32 - 1 }));
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return fc.oneof(fc.constantFrom(0n, -1n, 2n ** 63n - 1n, -(2n ** 63n)), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }));
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return fc.oneof(fc.constantFrom(0n, 1n, 2n ** 64n - 1n), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));
    case ScalarType.FLOAT:
    case ScalarType.DOUBLE:
      return fc.double();
  }
}

function anyOf(options: MessageArbitraryOptions, depth: number): fc.Arbitrary<Record<string, unknown>> {
  const choices: fc.Arbitrary<Record<string, unknown>>[] = [fc.record({ typeUrl: hostileString, value: fc.uint8Array({ maxLength: 64 }) })];
  const jsonUrls = options.jsonTypeUrls ?? [];
  if (jsonUrls.length > 0) {
    choices.push(
      fc.record({
        typeUrl: fc.constantFrom(...jsonUrls),
        value: fc.oneof(fc.json(), fc.string()).map((text) => new TextEncoder().encode(text)),
      }),
    );
  }
  if (depth > 0) {
    for (const type of options.anyTypes ?? []) {
      choices.push(
        fc.record({
          typeUrl: fc.constantFrom(type.typeName, `type.googleapis.com/${type.typeName}`),
          value: messageOf(type, options, depth - 1).map((init) => toBinary(type, create(type, init))),
        }),
      );
    }
  }
  return fc.oneof(...choices);
}

/** A ttrpc frame a hostile peer sends: its stream id as the next odd one, the same, an even one, one going back, or any number. */
export interface FuzzFrame {
  id: 'next' | 'same' | 'even' | 'back' | number;
  type: number;
  flags: number;
  payload: Uint8Array;
}

/**
 * Frames mostly well-formed on the outside (Requests and Data on increasing odd ids, envelopes
 * naming `services` and `methods`) with hostile insides, and now and then a frame that breaks the
 * protocol (bad ids, unknown types, garbage envelopes).
 */
export function fuzzFrameArbitrary(services: readonly string[], methods: readonly string[]): fc.Arbitrary<FuzzFrame> {
  const envelope = fc
    .record({
      service: fc.oneof(fc.constantFrom(...services), hostileString),
      method: fc.oneof(fc.constantFrom(...methods), hostileString),
      payload: fc.uint8Array({ maxLength: 64 }),
      timeoutNano: fc.oneof(fc.constant(0n), fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })),
      metadata: fc.array(fc.record({ key: hostileString, value: hostileString }), { maxLength: 3 }),
    })
    .map((request) => toBinary(RequestSchema, create(RequestSchema, request)));
  return fc.record({
    id: fc.oneof(
      { weight: 6, arbitrary: fc.constant('next' as const) },
      { weight: 1, arbitrary: fc.constantFrom('same' as const, 'even' as const, 'back' as const) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 1_000_000 }) },
    ),
    type: fc.oneof(
      { weight: 6, arbitrary: fc.constant(FrameType.Request) },
      { weight: 3, arbitrary: fc.constant(FrameType.Data) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
    ),
    flags: fc.oneof(fc.constantFrom(0, 1, 2, 4, 5), fc.integer({ min: 0, max: 255 })),
    payload: fc.oneof({ weight: 5, arbitrary: envelope }, { weight: 2, arbitrary: fc.uint8Array({ maxLength: 64 }) }),
  });
}

/** The bytes of `frames` on one connection, stream ids resolved in order (none above 1,000,001). */
export function encodeFuzzFrames(frames: readonly FuzzFrame[]): Buffer {
  let last = 1;
  const parts: Uint8Array[] = [];
  for (const frame of frames) {
    let id: number;
    if (frame.id === 'next') id = last += 2;
    else if (frame.id === 'same') id = last;
    else if (frame.id === 'even') id = last + 1;
    else if (frame.id === 'back') id = Math.max(1, last - 2);
    else id = frame.id;
    parts.push(encodeHeader(id, frame.type, frame.flags, frame.payload.length), frame.payload);
  }
  return Buffer.concat(parts);
}

/**
 * One unary gRPC call whose request is `bytes` exactly as given (no encoding on the way), to
 * send what no generated client would. Resolves with the status code (0 for OK) and details.
 */
export function rawUnaryCall(
  client: grpc.Client,
  path: string,
  bytes: Uint8Array,
  timeoutMs: number,
): Promise<{ code: number; details: string }> {
  const identity = (data: Buffer) => data;
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, identity, identity, Buffer.from(bytes), { deadline: Date.now() + timeoutMs }, (error) =>
      resolve(error ? { code: error.code, details: error.details } : { code: 0, details: '' }),
    );
  });
}
