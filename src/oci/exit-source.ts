// Where the exit of a container's process comes from. runc's processes are re-parented to
// kuasard (a child subreaper), which reaps them: the Reaper tells their exit. runsc's run inside
// the gVisor sandbox and are nobody's children on the host: `runsc wait <id>` tells a container
// init's exit. (runsc's exec'd processes need no wait: `runsc exec --detach` leaves a host
// `runsc exec` process, named by its pid file, that exits with the exec'd process's status, a
// signal death as 128 + the signal (runsc/cli), and that the Reaper can reap.) A kind picks the
// source that fits; the code that waits does not care which it got.

import type { ExitInfo } from '../base/model.js';
import type { Reaper } from '../linux/reaper.js';
import type { OciRuntime } from './runtime.js';

export interface ExitSource {
  /**
   * Resolves with the exit of the process `pid` of container `containerId` (its init, or with a
   * reaper an exec'd process too). Watching the same process twice gives the same promise.
   */
  watch(pid: number, containerId: string): Promise<ExitInfo>;
}

/** Exits reaped by kuasard itself, for processes that are its children (runc's). */
export class ReaperExitSource implements ExitSource {
  constructor(private readonly reaper: Reaper) {}

  /** Rejects with ErrnoError ECHILD when `pid` is not our child (see Reaper.watch). */
  watch(pid: number): Promise<ExitInfo> {
    return this.reaper.watch(pid);
  }
}

/**
 * Exits told by the runtime's `wait <id>` (runsc), for container inits that are not our
 * children. The pid is not used: runsc reports the gVisor sandbox's pid for every container in
 * it. A `wait` command runs per watched container until it exits or `stop` is called.
 */
export class RuntimeWaitExitSource implements ExitSource {
  private readonly waits = new Map<string, { exit: Promise<ExitInfo>; stop: AbortController }>();

  constructor(private readonly runtime: OciRuntime) {}

  /** Rejects with the runtime's error when `wait` fails (NotFound for an unknown container). */
  watch(_pid: number, containerId: string): Promise<ExitInfo> {
    const existing = this.waits.get(containerId);
    if (existing) return existing.exit;
    const stop = new AbortController();
    const exit = this.runtime.wait(containerId, { signal: stop.signal }).finally(() => {
      if (this.waits.get(containerId)?.stop === stop) this.waits.delete(containerId);
    });
    this.waits.set(containerId, { exit, stop });
    return exit;
  }

  /** How many containers are being waited for. */
  get size(): number {
    return this.waits.size;
  }

  /** Kills every `wait` under way; their watches reject with Cancelled. The containers are left alone. */
  stop(): void {
    for (const { stop } of this.waits.values()) stop.abort();
  }
}
