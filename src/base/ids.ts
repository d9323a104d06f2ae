// Identifiers arrive from containerd and end up in file system paths. Check them before any
// path is built from them, with containerd's own rule for identifiers.
import { invalidArgument } from './errors.js';

const MAX_ID_LENGTH = 76;
const ID_PATTERN = /^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$/;

/** True when `id` is a valid containerd identifier (validateId says what is wrong otherwise). */
export const isValidId = (id: string): boolean => id.length > 0 && id.length <= MAX_ID_LENGTH && ID_PATTERN.test(id);

/** Throws InvalidArgument unless `id` is a valid containerd identifier; returns it otherwise. */
export function validateId(what: string, id: string): string {
  if (id.length === 0) throw invalidArgument(`${what} id must not be empty`);
  if (id.length > MAX_ID_LENGTH) {
    throw invalidArgument(`${what} id "${id.slice(0, 16)}…" is longer than ${MAX_ID_LENGTH} characters`);
  }
  if (!ID_PATTERN.test(id)) {
    throw invalidArgument(`${what} id ${JSON.stringify(id)} is invalid: use letters, digits and single '.', '_' or '-' between them`);
  }
  return id;
}
