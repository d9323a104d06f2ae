// The state a kind's object keeps in the sandbox's state file: a version and the data, checked
// against the kind's own schema when it is read back. A value that fails the check is never
// acted on: kind states name mounts to unmount, processes to kill and directories to remove.
import * as check from '../base/schema.js';
import { failedPrecondition } from '../base/errors.js';
import type { SavedState } from '../base/model.js';

export type { SavedState } from '../base/model.js';

export interface StateCodec<T> {
  save(value: T): SavedState;
  /** The value in `saved`; FailedPrecondition naming `what` and the first thing wrong otherwise. */
  load(saved: SavedState | null, what: string): T;
}

/**
 * One version of one object's state. A kind that changes the shape bumps the version; a state
 * of another version is refused (with a reason the sandbox's status shows), not guessed at.
 */
export function stateCodec<T>(version: number, schema: check.Schema<T>): StateCodec<T> {
  return {
    save: (value) => ({ version, data: value }),
    load(saved, what) {
      if (!saved) throw failedPrecondition(`${what}: no state was saved`);
      if (saved.version !== version) throw failedPrecondition(`${what}: state version ${saved.version}, this kuasard reads ${version}`);
      const parsed = schema.safeParse(saved.data);
      if (parsed.success) return parsed.data;
      throw failedPrecondition(`${what}: state ${check.describeIssue(parsed.issues[0]!, '(whole)')}`);
    },
  };
}
