// The processes of the runc kind's containers, inits and execs alike: each is started by the OCI
// runtime with its stdio set up (FIFOs, pipes to streams, or a terminal), reaped by the Reaper,
// and keeps its stdio plumbing here, in memory, until its exit has drained or it is deleted.
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { notFound } from '../../base/errors.js';
import type { CreatedProcess, SandboxContext } from '../../kind-api/kind.js';
import type { WindowSize } from '../../base/model.js';
import type { ContainerRecord, ExecRecord, ExitInfo } from '../../base/model.js';
import { timed } from '../../base/stages.js';
import { ProcessStdio } from '../../io/process-stdio.js';
import { hasErrnoCode } from '../../linux/libc/binding.js';
import type { Reaper } from '../../linux/reaper.js';
import type { OciRuntime } from '../../oci/runtime.js';

interface RunningProcess {
  stdio: ProcessStdio;
  /** Once reaped, the pid may name another process: signals must not be sent to it any more. */
  reaped: boolean;
}

export class RuncProcesses {
  private readonly processes = new Map<string, RunningProcess>();

  constructor(
    private readonly runtime: OciRuntime,
    private readonly reaper: Reaper,
    /** Console sockets live here: a private directory with a short path. */
    private readonly consoleDir: string,
  ) {}

  /** `runc create` of the container's init, whose bundle (config.json) is `dir`. */
  async createInit(sandbox: SandboxContext, container: ContainerRecord, dir: string, pidFile: string): Promise<CreatedProcess> {
    const log = sandbox.log.child({ container: container.id });
    const stdio = await this.openStdio(sandbox, container, null);
    return this.launch(sandbox, container, null, stdio, () =>
      timed(log, 'oci.create', () => this.runtime.create(container.id, dir, { pidFile, ...stdio.runtime })),
    );
  }

  /** `runc exec --detach` of an exec process; its files live in the container's directory `dir`. */
  async startExec(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord, dir: string): Promise<CreatedProcess> {
    const log = sandbox.log.child({ container: container.id, exec: exec.id });
    const files = execFiles(dir, exec);
    // The terminal flag of the request decides how stdio is set up; the runtime must agree.
    await writeFile(files.process, JSON.stringify({ ...exec.spec, terminal: exec.stdio.terminal }));
    const stdio = await this.openStdio(sandbox, container, exec);
    return this.launch(sandbox, container, exec, stdio, () =>
      timed(log, 'oci.exec', () => this.runtime.exec(container.id, { pidFile: files.pid, processFile: files.process, ...stdio.runtime })),
    );
  }

  /** Signals an exec. runc's shim does the same (kill(2)): `runc kill` addresses inits only. */
  async killExec(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord, signal: number): Promise<void> {
    const running = this.processes.get(processKey(sandbox, container, exec));
    const gone = () => notFound(`kill exec ${exec.id} in container ${container.id}: process already finished`);
    // A pid we have not reaped cannot have been reused: it is our child (or zombie) until then.
    if (!running || running.reaped) throw gone();
    try {
      process.kill(exec.pid, signal);
    } catch (err) {
      if (hasErrnoCode(err, 'ESRCH')) throw gone();
      throw err;
    }
  }

  /** Drops a process's stdio at once (delete); for an exec, also its files. Idempotent. */
  async release(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord | null, dir: string): Promise<void> {
    const key = processKey(sandbox, container, exec);
    this.processes.get(key)?.stdio.close();
    this.processes.delete(key);
    if (exec) {
      const files = execFiles(dir, exec);
      await Promise.all([rm(files.process, { force: true }), rm(files.pid, { force: true })]);
    }
  }

  resize(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord | null, size: WindowSize): void {
    this.processes.get(processKey(sandbox, container, exec))?.stdio.resize(size);
  }

  closeStdin(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord | null): void {
    this.processes.get(processKey(sandbox, container, exec))?.stdio.closeStdin();
  }

  private openStdio(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord | null): Promise<ProcessStdio> {
    return ProcessStdio.open({
      stdio: exec?.stdio ?? container.stdio,
      streams: sandbox.streams,
      consoleDir: this.consoleDir,
      log: sandbox.log.child({ container: container.id, ...(exec ? { exec: exec.id } : {}) }),
    });
  }

  /** Runs the runtime command that starts the process, then watches the process until it ends. */
  private async launch(
    sandbox: SandboxContext,
    container: ContainerRecord,
    exec: ExecRecord | null,
    stdio: ProcessStdio,
    run: () => Promise<number>,
  ): Promise<CreatedProcess> {
    let pid: number;
    try {
      pid = await run();
    } catch (err) {
      stdio.close();
      throw err;
    }
    const key = processKey(sandbox, container, exec);
    const running: RunningProcess = { stdio, reaped: false };
    this.processes.set(key, running);
    const exited = this.reaper.watch(pid).then(
      async (exit): Promise<ExitInfo> => {
        running.reaped = true;
        // Everything the process wrote reaches containerd before its exit is reported: CRI
        // takes an exec's output to be complete once its exit is known.
        await stdio.finish();
        return exit;
      },
      (err: unknown) => {
        // Not our child after all: core reports the process lost; its stdio goes now.
        running.reaped = true;
        stdio.close();
        throw err;
      },
    );
    try {
      stdio.started();
    } catch (err) {
      // The process is reaped all the same (exited is watched); core deletes what the runtime made.
      exited.catch(() => undefined);
      stdio.close();
      this.processes.delete(key);
      throw err;
    }
    return { pid, exited };
  }
}

function processKey(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord | null): string {
  return `${sandbox.record.id}/${container.id}/${exec?.id ?? ''}`;
}

function execFiles(dir: string, exec: ExecRecord) {
  return { process: join(dir, `exec-${exec.id}.json`), pid: join(dir, `exec-${exec.id}.pid`) };
}
