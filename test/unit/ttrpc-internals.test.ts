// The ttrpc frame decoder and the inbound message queue, without sockets.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  Flag,
  FrameDecoder,
  FrameType,
  HEADER_LENGTH,
  MAX_PAYLOAD_LENGTH,
  encodeHeader,
  type DecodedItem,
} from '../../src/rpc/ttrpc/frame.js';
import type { Socket } from 'node:net';
import { InboundQueue, ReadThrottle, STREAM_HIGH_WATER_MARK } from '../../src/rpc/ttrpc/inbound.js';

function frameBytes(streamId: number, type: number, flags: number, payload: Uint8Array): Buffer {
  return Buffer.concat([encodeHeader(streamId, type, flags, payload.length), payload]);
}

function feedAll(decoder: FrameDecoder, chunks: Uint8Array[]): DecodedItem[] {
  return chunks.flatMap((chunk) => decoder.push(chunk));
}

describe('ttrpc frame header', () => {
  it('is 10 big-endian bytes: length, stream id, type, flags', () => {
    assert.deepEqual(
      [...encodeHeader(0x01020304, FrameType.Data, Flag.RemoteClosed | Flag.NoData, 0x0a0b0c)],
      [0x00, 0x0a, 0x0b, 0x0c, 0x01, 0x02, 0x03, 0x04, 0x03, 0x05],
    );
    assert.equal(HEADER_LENGTH, 10);
    assert.equal(MAX_PAYLOAD_LENGTH, 4 * 1024 * 1024);
  });
});

describe('FrameDecoder', () => {
  it('decodes several frames from one chunk, including an empty one', () => {
    const decoder = new FrameDecoder();
    const bytes = Buffer.concat([
      frameBytes(1, FrameType.Request, 0, Buffer.from('abc')),
      frameBytes(1, FrameType.Data, Flag.RemoteClosed | Flag.NoData, Buffer.alloc(0)),
      frameBytes(3, FrameType.Response, 0, Buffer.from('z')),
    ]);
    const items = decoder.push(bytes);
    const summary = items.map((item) =>
      item.kind === 'frame'
        ? [item.frame.streamId, item.frame.type, item.frame.flags, Buffer.from(item.frame.payload).toString()]
        : item.kind,
    );
    assert.deepEqual(summary, [
      [1, FrameType.Request, 0, 'abc'],
      [1, FrameType.Data, 5, ''],
      [3, FrameType.Response, 0, 'z'],
    ]);
    assert.equal(decoder.finish(), undefined);
  });

  it('reassembles a frame delivered one byte at a time', () => {
    const decoder = new FrameDecoder();
    const bytes = frameBytes(7, FrameType.Data, 0, Buffer.from('hello'));
    const items = feedAll(
      decoder,
      [...bytes].map((byte) => Uint8Array.of(byte)),
    );
    assert.equal(items.length, 1);
    const [item] = items;
    assert.equal(item?.kind, 'frame');
    if (item?.kind === 'frame') {
      assert.equal(item.frame.streamId, 7);
      assert.equal(Buffer.from(item.frame.payload).toString(), 'hello');
    }
  });

  it('skips an oversized frame as it arrives and stays in sync for the next one', () => {
    const decoder = new FrameDecoder();
    const length = MAX_PAYLOAD_LENGTH + 1;
    const items = feedAll(decoder, [
      encodeHeader(9, FrameType.Request, 0, length),
      Buffer.alloc(length - 5, 0xaa),
      Buffer.concat([Buffer.alloc(5, 0xaa), frameBytes(11, FrameType.Request, 0, Buffer.from('ok'))]),
    ]);
    assert.deepEqual(items[0], {
      kind: 'skipped',
      skipped: { streamId: 9, type: FrameType.Request, flags: 0, length, reason: 'oversized' },
    });
    assert.equal(items[1]?.kind, 'frame');
    assert.equal(items.length, 2);
  });

  it('reports an oversized frame cut short as truncated, without having buffered it', () => {
    const decoder = new FrameDecoder();
    assert.deepEqual(decoder.push(encodeHeader(1, FrameType.Request, 0, 0xffffffff)), []);
    assert.deepEqual(decoder.push(Buffer.alloc(1024)), []);
    assert.match(decoder.finish() ?? '', /truncated frame: stream 1 announced 4294967295 bytes/);
  });

  it('skips a frame of unknown type', () => {
    const decoder = new FrameDecoder();
    const items = decoder.push(Buffer.concat([frameBytes(5, 9, 0, Buffer.from('??')), frameBytes(7, FrameType.Data, 0, Buffer.from('x'))]));
    assert.deepEqual(items[0], {
      kind: 'skipped',
      skipped: { streamId: 5, type: 9, flags: 0, length: 2, reason: 'unknown-type' },
    });
    assert.equal(items[1]?.kind, 'frame');
  });

  it('reports a partial header at the end of input', () => {
    const decoder = new FrameDecoder();
    decoder.push(Buffer.from([0, 0, 0]));
    assert.equal(decoder.finish(), 'truncated frame header: 3 of 10 bytes');
  });
});

describe('InboundQueue', () => {
  it('delivers messages pushed before and after the reader waits, then ends', async () => {
    const queue = new InboundQueue<string>(
      () => {},
      () => {},
    );
    queue.push('a');
    const iterator = queue[Symbol.asyncIterator]();
    assert.deepEqual(await iterator.next(), { value: 'a', done: false });
    const pending = iterator.next();
    queue.push('b');
    assert.deepEqual(await pending, { value: 'b', done: false });
    queue.end();
    assert.deepEqual(await iterator.next(), { value: undefined, done: true });
  });

  it('lets the reader drain what arrived before a failure, then throws it', async () => {
    const queue = new InboundQueue<string>(
      () => {},
      () => {},
    );
    queue.push('a');
    queue.fail(new Error('gone'));
    const iterator = queue[Symbol.asyncIterator]();
    assert.deepEqual(await iterator.next(), { value: 'a', done: false });
    await assert.rejects(iterator.next(), /gone/);
  });

  it('reports crossing the high-water mark up and back down', async () => {
    const events: string[] = [];
    const queue = new InboundQueue<number>(
      () => events.push('full'),
      () => events.push('room'),
    );
    for (let i = 0; i < STREAM_HIGH_WATER_MARK + 2; i++) queue.push(i);
    assert.deepEqual(events, ['full']);
    const iterator = queue[Symbol.asyncIterator]();
    await iterator.next();
    await iterator.next();
    assert.deepEqual(events, ['full']);
    await iterator.next();
    assert.deepEqual(events, ['full', 'room']);
  });

  it('gives the room back when the reader stops early', async () => {
    const events: string[] = [];
    const queue = new InboundQueue<number>(
      () => events.push('full'),
      () => events.push('room'),
    );
    for (let i = 0; i <= STREAM_HIGH_WATER_MARK; i++) queue.push(i);
    for await (const value of queue) {
      assert.equal(value, 0);
      break;
    }
    assert.deepEqual(events, ['full', 'room']);
    queue.push(99);
    assert.deepEqual(events, ['full', 'room']);
  });
});

describe('ReadThrottle', () => {
  it('pauses the socket while any stream holds it and resumes when the last lets go', () => {
    const calls: string[] = [];
    const socket = { pause: () => calls.push('pause'), resume: () => calls.push('resume') } as unknown as Socket;
    const throttle = new ReadThrottle(socket);
    const [a, b] = [{}, {}];
    throttle.hold(a);
    throttle.hold(b);
    throttle.hold(a);
    throttle.release(a);
    assert.deepEqual(calls, ['pause']);
    throttle.release(b);
    throttle.release(b);
    assert.deepEqual(calls, ['pause', 'resume']);
  });
});
