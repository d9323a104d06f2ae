// A stand-in for a process a kind runs, for unit tests of the engine and the services: it runs
// until the test ends it.
import { exitedNow } from '../base/model.js';
import type { ProcessEnd } from '../kind-api/kind.js';

export interface FakeProcess {
  pid: number;
  /** What the kind hands the engine as the process's end (KindProcess.exited). */
  exited: Promise<ProcessEnd>;
  /** Ends the process now with `exitStatus` (OOM-killed when told); later calls change nothing. */
  end(exitStatus: number, options?: { oomKilled?: boolean }): void;
}

export function fakeProcess(pid: number): FakeProcess {
  let settle!: (end: ProcessEnd) => void;
  const exited = new Promise<ProcessEnd>((resolve) => (settle = resolve));
  return { pid, exited, end: (exitStatus, options = {}) => settle({ ...exitedNow(exitStatus), oomKilled: options.oomKilled ?? false }) };
}
