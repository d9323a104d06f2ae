// What the runtime CLIs print on stdout, parsed and checked. runc and runsc print the same shapes
// for the commands they share (runsc copies runc's formats); output of any other shape is a
// fault of the runtime or of our reading of it: Internal.

import { internal } from '../base/errors.js';
import { exitedNow, type ExitInfo } from '../base/model.js';

export interface RuntimeVersion {
  /** The binary's own name for itself ("runc", "crun", "runsc"). */
  name: string;
  version: string;
  /** The OCI runtime spec version it implements. */
  spec?: string;
  commit?: string;
}

/** A container's status as `state` reports it (the OCI states, plus "paused" as both runtimes add). */
export type ContainerStatus = 'creating' | 'created' | 'running' | 'stopped' | 'paused';

const STATUSES: readonly string[] = ['creating', 'created', 'running', 'stopped', 'paused'] satisfies ContainerStatus[];

export interface ContainerState {
  id: string;
  status: ContainerStatus;
  /** runc: the init's host pid (0 once stopped). runsc: the pid of the gVisor sandbox holding the container (-1 when not running). */
  pid: number;
  bundle: string;
  annotations: Record<string, string>;
}

function unrecognised(what: string, output: string): Error {
  return internal(`unrecognised runtime ${what} output: ${JSON.stringify(output.slice(0, 200))}`);
}

function parseObject(what: string, output: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(output);
  } catch {
    throw unrecognised(what, output);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw unrecognised(what, output);
  return value as Record<string, unknown>;
}

export function parseVersion(output: string): RuntimeVersion {
  const head = /^(\S+) version (\S+)/m.exec(output);
  if (!head) throw unrecognised('version', output);
  const version: RuntimeVersion = { name: head[1]!, version: head[2]! };
  const spec = /^spec: (\S+)/m.exec(output)?.[1];
  const commit = /^commit: (\S+)/m.exec(output)?.[1];
  if (spec) version.spec = spec;
  if (commit) version.commit = commit;
  return version;
}

/** `state <id>`: the OCI state JSON (runsc indents it, runc does not). */
export function parseState(output: string): ContainerState {
  const { id, status, pid, bundle, annotations } = parseObject('state', output);
  const valid =
    typeof id === 'string' &&
    typeof status === 'string' &&
    STATUSES.includes(status) &&
    Number.isInteger(pid) &&
    typeof bundle === 'string' &&
    (annotations === undefined || annotations === null || (typeof annotations === 'object' && !Array.isArray(annotations)));
  if (!valid) throw unrecognised('state', output);
  return {
    id,
    status: status as ContainerStatus,
    pid: pid as number,
    bundle,
    annotations: { ...((annotations ?? {}) as Record<string, string>) },
  };
}

/** `ps --format json <id>`: a JSON array of pids (null when there are none). */
export function parsePids(output: string): number[] {
  let value: unknown;
  try {
    value = JSON.parse(output);
  } catch {
    throw unrecognised('ps', output);
  }
  if (value === null) return [];
  if (!Array.isArray(value) || !value.every((pid) => Number.isInteger(pid))) throw unrecognised('ps', output);
  return value as number[];
}

/**
 * runsc `wait <id>`: one line of JSON, `{"id":"<id>","exitStatus":<n>}`, where a process killed by
 * a signal has 128 + the signal number (runsc/cmd/wait.go), as ExitInfo counts it. The runtime
 * prints it the moment the process has ended, so the exit is timed on reading.
 */
export function parseWaitResult(output: string, id: string): ExitInfo {
  const result = parseObject('wait', output);
  if (result['id'] !== id || !Number.isInteger(result['exitStatus'])) throw unrecognised('wait', output);
  return exitedNow(result['exitStatus'] as number);
}
