// The protobuf envelope inside Request and Response frames, and the mapping between a
// Response status and the runtime's RuntimeError.

import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { KeyValueSchema, ResponseSchema, type KeyValue, type Response } from '../../api/ttrpc/ttrpc_pb.js';
import type { Status } from '../../api/google/rpc/status_pb.js';
import { Code, RuntimeError, toStatus } from '../../base/errors.js';

/** Request metadata: every value a key was sent with, in order. */
export type Metadata = Record<string, string[]>;

/** Metadata as a caller may give it: one value or several per key. */
export type MetadataInit = Record<string, string | readonly string[]>;

export function metadataFromWire(pairs: readonly KeyValue[]): Metadata {
  // No prototype: keys come from the peer, and "__proto__" must stay an ordinary key.
  const metadata: Metadata = Object.create(null) as Metadata;
  for (const { key, value } of pairs) {
    metadata[key] ??= [];
    metadata[key].push(value);
  }
  return metadata;
}

export function metadataToWire(metadata: MetadataInit): KeyValue[] {
  return Object.entries(metadata).flatMap(([key, values]) =>
    (typeof values === 'string' ? [values] : values).map((value) => create(KeyValueSchema, { key, value })),
  );
}

/** A successful Response. It names the OK status explicitly, as containerd's Go server does. */
export function encodeSuccess(payload: Uint8Array): Uint8Array {
  return toBinary(ResponseSchema, create(ResponseSchema, { status: { code: Code.OK }, payload }));
}

/** Longest status message sent: statuses are read by people, and must fit in a frame. */
const MAX_STATUS_MESSAGE_LENGTH = 64 * 1024;

/** The Response for a failure: code and message only, never a stack. */
export function encodeFailure(err: unknown): Uint8Array {
  const { code, message } = toStatus(err);
  const shown = message.length > MAX_STATUS_MESSAGE_LENGTH ? `${message.slice(0, MAX_STATUS_MESSAGE_LENGTH)}...` : message;
  return toBinary(ResponseSchema, create(ResponseSchema, { status: { code, message: shown } }));
}

/** A Response status as an error, or undefined when it means success (absent or OK). */
function errorFromStatus(status: Status | undefined): RuntimeError | undefined {
  if (status === undefined || status.code === Code.OK) return undefined;
  return new RuntimeError(status.code as Code, status.message);
}

/** The payload of a Response frame; throws its status as a RuntimeError when it is not OK. */
export function readResponse(bytes: Uint8Array): Uint8Array {
  let response: Response;
  try {
    response = fromBinary(ResponseSchema, bytes);
  } catch (err) {
    throw new RuntimeError(Code.Internal, `invalid ttrpc response: ${errorMessage(err)}`);
  }
  const error = errorFromStatus(response.status);
  if (error) throw error;
  return response.payload;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** ttrpc's timeout_nano from milliseconds (0 means no deadline on the wire). */
export function timeoutNanos(timeoutMs: number | undefined): bigint {
  if (timeoutMs === undefined) return 0n;
  return BigInt(Math.max(1, Math.round(timeoutMs * 1e6)));
}
