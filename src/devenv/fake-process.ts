// A stand-in for a process a kind runs, for unit tests of core and the services: it runs until
// the test ends it.
import { exitedNow, type ExitInfo } from '../base/model.js';

export interface FakeProcess {
  pid: number;
  /** What the kind hands core as the process's end (CreatedProcess.exited). */
  exited: Promise<ExitInfo>;
  /** Ends the process now with `exitStatus`. */
  end(exitStatus: number): void;
}

export function fakeProcess(pid: number): FakeProcess {
  let settle!: (exit: ExitInfo) => void;
  const exited = new Promise<ExitInfo>((resolve) => (settle = resolve));
  return { pid, exited, end: (exitStatus) => settle(exitedNow(exitStatus)) };
}
