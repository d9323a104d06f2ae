// ttrpc framing: a 10-byte big-endian header (payload length u32, stream id u32, type u8,
// flags u8) followed by the payload. Payloads above 4 MiB are refused by both ends.

import { Code, RuntimeError } from '../../base/errors.js';

export const HEADER_LENGTH = 10;
export const MAX_PAYLOAD_LENGTH = 4 << 20;

export enum FrameType {
  Request = 1,
  Response = 2,
  Data = 3,
}

/** Frame flags, named from the receiver's point of view as the protocol names them. */
export const Flag = {
  /** The sender will send nothing more on this stream. */
  RemoteClosed: 0x01,
  /** Request only: the sender will follow up with Data frames. */
  RemoteOpen: 0x02,
  /** Data only: the frame carries no message (a bare close). */
  NoData: 0x04,
} as const;

export interface Frame {
  streamId: number;
  type: FrameType;
  flags: number;
  payload: Uint8Array;
}

/** A frame whose header was readable but whose payload was skipped instead of delivered. */
export interface SkippedFrame {
  streamId: number;
  type: number;
  flags: number;
  length: number;
  reason: 'oversized' | 'unknown-type';
}

export type DecodedItem = { kind: 'frame'; frame: Frame } | { kind: 'skipped'; skipped: SkippedFrame };

/** The error for a payload over the limit, sent or received (containerd answers ResourceExhausted). */
export function oversizedError(length: number): RuntimeError {
  return new RuntimeError(Code.ResourceExhausted, `message length ${length} exceeds maximum message size of ${MAX_PAYLOAD_LENGTH}`);
}

/** Header bytes for one frame; the payload is written right after it. */
export function encodeHeader(streamId: number, type: FrameType, flags: number, length: number): Buffer {
  const header = Buffer.allocUnsafe(HEADER_LENGTH);
  header.writeUInt32BE(length, 0);
  header.writeUInt32BE(streamId, 4);
  header.writeUInt8(type, 8);
  header.writeUInt8(flags, 9);
  return header;
}

function isFrameType(type: number): type is FrameType {
  return type === FrameType.Request || type === FrameType.Response || type === FrameType.Data;
}

/**
 * Turns socket chunks into frames. It never holds more than one header and one payload of at
 * most MAX_PAYLOAD_LENGTH: a frame that is too long, or of a type this side does not know, is
 * consumed and dropped as its bytes arrive (as containerd's Go implementation does), and reported
 * so the caller can answer on its stream id. The connection stays in sync either way.
 */
export class FrameDecoder {
  private readonly header = Buffer.alloc(HEADER_LENGTH);
  private headerFilled = 0;
  /** The frame whose payload is being read, or skipped when `skipping` is set. */
  private current: { streamId: number; type: number; flags: number; length: number } | undefined;
  private payload: Buffer | undefined;
  private payloadFilled = 0;
  private skipping: SkippedFrame['reason'] | undefined;

  push(chunk: Uint8Array): DecodedItem[] {
    const items: DecodedItem[] = [];
    let offset = 0;
    while (offset < chunk.length) {
      if (this.current === undefined) {
        const take = Math.min(HEADER_LENGTH - this.headerFilled, chunk.length - offset);
        this.header.set(chunk.subarray(offset, offset + take), this.headerFilled);
        this.headerFilled += take;
        offset += take;
        if (this.headerFilled === HEADER_LENGTH) this.startFrame();
      } else {
        offset = this.consumePayload(chunk, offset);
      }
      // A frame with an empty payload is complete as soon as its header is.
      const item = this.takeCompleted();
      if (item) items.push(item);
    }
    return items;
  }

  /**
   * Call at end of input. Returns why the input was cut short (a partial header or payload
   * was pending), or undefined when the input ended on a frame boundary.
   */
  finish(): string | undefined {
    if (this.current !== undefined) {
      return `truncated frame: stream ${this.current.streamId} announced ${this.current.length} bytes`;
    }
    if (this.headerFilled > 0) return `truncated frame header: ${this.headerFilled} of ${HEADER_LENGTH} bytes`;
    return undefined;
  }

  private startFrame(): void {
    const current = {
      length: this.header.readUInt32BE(0),
      streamId: this.header.readUInt32BE(4),
      type: this.header.readUInt8(8),
      flags: this.header.readUInt8(9),
    };
    this.current = current;
    this.headerFilled = 0;
    this.payloadFilled = 0;
    if (current.length > MAX_PAYLOAD_LENGTH) this.skipping = 'oversized';
    else if (!isFrameType(current.type)) this.skipping = 'unknown-type';
    else this.payload = Buffer.allocUnsafe(current.length);
  }

  private consumePayload(chunk: Uint8Array, offset: number): number {
    const current = this.current!;
    const take = Math.min(current.length - this.payloadFilled, chunk.length - offset);
    if (this.payload) this.payload.set(chunk.subarray(offset, offset + take), this.payloadFilled);
    this.payloadFilled += take;
    return offset + take;
  }

  private takeCompleted(): DecodedItem | undefined {
    const current = this.current;
    if (current === undefined || this.payloadFilled < current.length) return undefined;
    const { skipping, payload } = this;
    this.current = undefined;
    this.payload = undefined;
    this.skipping = undefined;
    if (skipping) return { kind: 'skipped', skipped: { ...current, reason: skipping } };
    return {
      kind: 'frame',
      frame: { streamId: current.streamId, type: current.type, flags: current.flags, payload: payload! },
    };
  }
}
