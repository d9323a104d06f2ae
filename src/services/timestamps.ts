// Conversions between core's ISO strings and protobuf Timestamps.
import { timestampFromDate, type Timestamp } from '@bufbuild/protobuf/wkt';

export const toTimestamp = (iso: string | null | undefined): Timestamp | undefined =>
  iso ? timestampFromDate(new Date(iso)) : undefined;
