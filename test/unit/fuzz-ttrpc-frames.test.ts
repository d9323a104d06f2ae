// Property-based tests of ttrpc framing: whatever frames the writer sends, cut into whatever
// chunks the socket delivers, the decoder gives back exactly those frames; and no byte sequence
// at all makes the decoder throw or buffer more than one frame's payload.
// A failure prints fast-check's seed and path: FUZZ_SEED=<seed> FUZZ_PATH=<path> replays it.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Code, RuntimeError } from '../../src/base/errors.js';
import { fuzzParameters } from '../../src/devenv/fuzz.js';
import { FrameDecoder, FrameType, HEADER_LENGTH, MAX_PAYLOAD_LENGTH, type DecodedItem, type Frame } from '../../src/rpc/ttrpc/frame.js';
import { FrameWriter } from '../../src/rpc/ttrpc/writer.js';

const frameArbitrary: fc.Arbitrary<Frame> = fc.record({
  streamId: fc.oneof(fc.constantFrom(0, 1, 2, 2 ** 32 - 1), fc.integer({ min: 0, max: 2 ** 32 - 1 })),
  type: fc.constantFrom(FrameType.Request, FrameType.Response, FrameType.Data),
  flags: fc.integer({ min: 0, max: 255 }),
  payload: fc.uint8Array({ maxLength: 300 }),
});

/** Where to cut a byte string: sorted offsets inside it. */
const cutsArbitrary = fc.array(fc.nat(), { maxLength: 20 });

function cut(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const offsets = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % bytes.length)))].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const offset of offsets) {
    chunks.push(bytes.subarray(start, offset));
    start = offset;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

function decodeAll(chunks: readonly Uint8Array[]): { items: DecodedItem[]; leftover: string | undefined } {
  const decoder = new FrameDecoder();
  const items = chunks.flatMap((chunk) => decoder.push(chunk));
  return { items, leftover: decoder.finish() };
}

/**
 * A FrameWriter over a stand-in for a socket that keeps what is written: the writer's own logic
 * (header, corked payload, refusal of oversized payloads) is what is under test here.
 */
function capturingWriter(): { writer: FrameWriter; written: () => Uint8Array } {
  const chunks: Buffer[] = [];
  const socket = {
    destroyed: false,
    writableEnded: false,
    writableNeedDrain: false,
    on: () => socket,
    cork: () => undefined,
    uncork: () => undefined,
    write: (chunk: Buffer) => chunks.push(Buffer.from(chunk)) > 0,
  };
  return { writer: new FrameWriter(socket as unknown as Socket), written: () => Buffer.concat(chunks) };
}

describe('ttrpc framing (property-based)', () => {
  it('gives back every frame the writer wrote, however the bytes are cut into chunks', () => {
    fc.assert(
      fc.property(fc.array(frameArbitrary, { maxLength: 12 }), cutsArbitrary, (frames, cuts) => {
        const { writer, written } = capturingWriter();
        for (const frame of frames) writer.write(frame.streamId, frame.type, frame.flags, frame.payload);
        const bytes = written();
        assert.equal(
          bytes.length,
          frames.reduce((sum, f) => sum + HEADER_LENGTH + f.payload.length, 0),
        );
        const { items, leftover } = decodeAll(cut(bytes, cuts));
        assert.equal(leftover, undefined);
        assert.deepEqual(
          items.map((item) => (item.kind === 'frame' ? { ...item.frame, payload: Buffer.from(item.frame.payload) } : item)),
          frames.map((frame) => ({ ...frame, payload: Buffer.from(frame.payload) })),
        );
      }),
      fuzzParameters(300),
    );
  });

  it('never throws on garbage, decodes it the same in any chunking, and says when it ended mid-frame', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), cutsArbitrary, (garbage, cuts) => {
        const whole = decodeAll([garbage]);
        const chunked = decodeAll(cut(garbage, cuts));
        assert.deepEqual(chunked, whole);
        let consumed = 0;
        for (const item of whole.items) {
          if (item.kind === 'frame') {
            assert.ok([FrameType.Request, FrameType.Response, FrameType.Data].includes(item.frame.type));
            assert.ok(item.frame.payload.length <= MAX_PAYLOAD_LENGTH);
            consumed += HEADER_LENGTH + item.frame.payload.length;
          } else {
            consumed += HEADER_LENGTH + item.skipped.length;
          }
        }
        // Every byte belongs to a whole frame, or to the one cut short at the end.
        assert.equal(whole.leftover === undefined, consumed === garbage.length);
        assert.ok(consumed <= garbage.length);
      }),
      fuzzParameters(500),
    );
  });

  it('skips frames over 4 MiB or of unknown type as their bytes arrive and stays in sync', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: MAX_PAYLOAD_LENGTH + 1, max: MAX_PAYLOAD_LENGTH + 4096 }),
        fc.integer({ min: 4, max: 255 }),
        frameArbitrary,
        fc.integer({ min: 1, max: 70_000 }),
        (oversized, unknownType, after, chunkSize) => {
          const { writer, written } = capturingWriter();
          const header = (length: number, type: number) => {
            const bytes = Buffer.alloc(HEADER_LENGTH);
            bytes.writeUInt32BE(length, 0);
            bytes.writeUInt32BE(7, 4);
            bytes.writeUInt8(type, 8);
            return bytes;
          };
          writer.write(after.streamId, after.type, after.flags, after.payload);
          const bytes = Buffer.concat([
            header(oversized, FrameType.Request),
            Buffer.alloc(oversized),
            header(3, unknownType),
            Buffer.from('abc'),
            written(),
          ]);
          const decoder = new FrameDecoder();
          const items: DecodedItem[] = [];
          for (let offset = 0; offset < bytes.length; offset += chunkSize) {
            items.push(...decoder.push(bytes.subarray(offset, offset + chunkSize)));
          }
          assert.equal(decoder.finish(), undefined);
          assert.deepEqual(
            items.map((item) => (item.kind === 'skipped' ? item.skipped.reason : 'frame')),
            ['oversized', 'unknown-type', 'frame'],
          );
          const last = items[2];
          assert.ok(last?.kind === 'frame');
          assert.deepEqual(Buffer.from(last.frame.payload), Buffer.from(after.payload));
        },
      ),
      fuzzParameters(20),
    );
  });

  it('refuses to write a payload over 4 MiB, and writes nothing of it', () => {
    const { writer, written } = capturingWriter();
    assert.throws(
      () => writer.write(1, FrameType.Data, 0, new Uint8Array(MAX_PAYLOAD_LENGTH + 1)),
      (err: unknown) => err instanceof RuntimeError && err.code === Code.ResourceExhausted,
    );
    assert.equal(written().length, 0);
  });
});
