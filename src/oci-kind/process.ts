// One process of a container run by an OCI runtime CLI, its init or an exec: started by the
// runtime with its stdio set up (FIFOs, pipes to streams, or a terminal), followed until it ends
// (reaped by the Reaper, or told by the runtime's `wait`: see oci/exit-source.ts), and holding
// its stdio plumbing until its exit has drained or it is released.
import type { Logger } from 'pino';
import { failedPrecondition, notFound } from '../base/errors.js';
import type { ExitInfo, Stdio, WindowSize } from '../base/model.js';
import type { StreamRegistry } from '../base/streams.js';
import { ProcessStdio, type RuntimeStdio } from '../io/process-stdio.js';
import { hasErrnoCode } from '../linux/libc/binding.js';
import type { KindProcess, ProcessEnd } from '../kind-api/kind.js';

/** What a process's start needs besides the runtime command that starts it. */
export interface LaunchContext {
  /** Console sockets live here: a private directory with a short path. */
  consoleDir: string;
  streams: StreamRegistry;
  log: Logger;
}

export class OciProcess implements KindProcess {
  readonly exited: Promise<ProcessEnd>;
  /** Once reaped, the pid may name another process: signals must not be sent to it any more. */
  private reaped = false;

  private constructor(
    readonly pid: number,
    private readonly stdio: ProcessStdio | null,
    ended: Promise<ExitInfo>,
    /** What the kind learns once the process has ended (its OOM count), before the exit is reported. */
    afterExit: (exit: ExitInfo) => Promise<ProcessEnd>,
  ) {
    this.exited = ended.then(afterExit);
  }

  /**
   * Opens the process's stdio, runs `run` (the runtime command that starts the process and
   * returns its pid) with it, and follows the process until `watch` says it ended.
   */
  static async launch(
    context: LaunchContext,
    stdio: Stdio,
    run: (runtimeStdio: RuntimeStdio) => Promise<number>,
    watch: (pid: number) => Promise<ExitInfo>,
    afterExit: (exit: ExitInfo) => Promise<ProcessEnd>,
    options: { handOverLater?: boolean } = {},
  ): Promise<OciProcess> {
    const io = await ProcessStdio.open({ stdio, streams: context.streams, consoleDir: context.consoleDir, log: context.log });
    let pid: number;
    try {
      pid = await run(io.runtime);
    } catch (err) {
      io.close();
      throw err;
    }
    let process: OciProcess | undefined;
    const ended = watch(pid).then(
      async (exit) => {
        if (process) process.reaped = true;
        // Everything the process wrote reaches containerd before its exit is reported: CRI
        // takes an exec's output to be complete once its exit is known.
        await io.finish();
        return exit;
      },
      (err: unknown) => {
        // Not watchable after all (not our child): the engine reports the process lost; its stdio goes now.
        if (process) process.reaped = true;
        io.close();
        throw err;
      },
    );
    process = new OciProcess(pid, io, ended, afterExit);
    if (!options.handOverLater) process.handedOver(io);
    return process;
  }

  /**
   * For a runtime that gives the process its stdio when it starts it (runsc's containers of a
   * sandbox), not when it creates it: `run` gets the stdio the process is to inherit, and the
   * daemon lets go of it once `run` has returned. Only for a process launched with handOverLater.
   */
  async handOver(run: (runtimeStdio: RuntimeStdio) => Promise<void>): Promise<void> {
    if (!this.stdio) throw failedPrecondition(`process ${this.pid}: its stdio is gone`);
    await run(this.stdio.runtime);
    this.handedOver(this.stdio);
  }

  /** The runtime has given the process its stdio: the daemon's copies of it go, copying begins. */
  private handedOver(io: ProcessStdio): void {
    try {
      io.started();
    } catch (err) {
      // The process is reaped all the same (its end is watched); the caller deletes what the runtime made.
      this.exited.catch(() => undefined);
      io.close();
      throw err;
    }
  }

  /**
   * A process of the previous run of kuasard, still running or not: it is no longer our child,
   * so we learn when it ends, not how (255); its stdio, if the daemon copied it, is gone.
   */
  static adopted(pid: number, ended: Promise<ExitInfo>, afterExit: (exit: ExitInfo) => Promise<ProcessEnd>): OciProcess {
    return new OciProcess(pid, null, ended, afterExit);
  }

  /** Signals the process with kill(2), as runc's shim signals an exec (`runc kill` addresses inits only). */
  async kill(signal: number): Promise<void> {
    const gone = () => notFound(`kill process ${this.pid}: process already finished`);
    // A pid we have not reaped cannot have been reused: it is our child (or zombie) until then.
    if (this.reaped || !this.stdio) throw gone();
    try {
      process.kill(this.pid, signal);
    } catch (err) {
      if (hasErrnoCode(err, 'ESRCH')) throw gone();
      throw err;
    }
  }

  async resize(size: WindowSize): Promise<void> {
    this.stdio?.resize(size);
  }

  async closeStdin(): Promise<void> {
    this.stdio?.closeStdin();
  }

  /** Drops the process's stdio at once (a delete). Idempotent. */
  release(): void {
    this.stdio?.close();
  }
}
