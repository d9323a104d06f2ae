// protobuf well-known types as containerd writes and reads them: an Any holding a message, and
// a Timestamp made from one of core's ISO strings.
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from '@bufbuild/protobuf';
import { AnySchema, timestampFromDate, type Any, type Timestamp } from '@bufbuild/protobuf/wkt';

/**
 * An Any holding `init` as a message of `schema`, with the message's full name for its type URL,
 * as containerd's typeurl writes one (not protobuf's "type.googleapis.com/" form): containerd's
 * CRI compares the URL with a type's name (typeurl.Is) when it reads metrics, for one.
 */
export function packAny<S extends DescMessage>(schema: S, init: MessageInitShape<S>): Any {
  return create(AnySchema, { typeUrl: schema.typeName, value: toBinary(schema, create(schema, init)) });
}

/**
 * The message in `any` when it is of `schema`'s type, undefined when it is of another. As
 * containerd (Go's protoregistry) does, only the name after the URL's last '/' counts, so both
 * forms of the URL are read. Throws when the bytes do not decode.
 */
export function unpackAny<S extends DescMessage>(any: Any, schema: S): MessageShape<S> | undefined {
  const name = any.typeUrl.slice(any.typeUrl.lastIndexOf('/') + 1);
  return name === schema.typeName ? fromBinary(schema, any.value) : undefined;
}

export const toTimestamp = (iso: string | null | undefined): Timestamp | undefined => (iso ? timestampFromDate(new Date(iso)) : undefined);
