// One pod's VM as a process on the host: QEMU started daemonized (it returns once the VM is set up,
// so a bad option or a missing file fails the start with QEMU's own message), inside the pod's
// network namespace and, from its first instruction, in the VM's cgroup (vm-cgroup.ts: every page
// it allocates is charged to the pod), re-parented to kuasard (a child subreaper) and watched
// there. After a restart of kuasard it is another's child (whoever reaped kuasard's orphans):
// watched through a pidfd. Ending it asks QEMU to quit over QMP and kills it when it does not
// within the time given.
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { failedPrecondition } from '../../base/errors.js';
import { CgroupExecError, execFileInCgroup } from '../../linux/cgroup-exec.js';
import { hasErrnoCode } from '../../linux/libc/binding.js';
import { isSameProcessRunning, readProcStat } from '../../linux/proc.js';
import type { Reaper } from '../../linux/reaper.js';
import { qemuArgs, type VmLayout } from './qemu-args.js';
import { qmpCommand } from './qmp.js';

/** How long QEMU may take to set the VM up and daemonize. */
const LAUNCH_TIMEOUT_MS = 30_000;

export interface VmProcess {
  pid: number;
  /** /proc's start time of the pid: a pid alone may name another process later. */
  startTime: string;
}

export class Vm {
  private constructor(
    readonly process: VmProcess,
    private readonly qmpSocket: string,
    /** Settles once QEMU has exited. */
    readonly ended: Promise<void>,
  ) {}

  /**
   * Starts QEMU for `layout` in the cgroup `cgroupsPath`, in the network namespace at `netnsPath`
   * when one is given.
   */
  static async launch(
    layout: VmLayout,
    options: { qemu: string; netnsPath: string; cgroupsPath: string; reaper: Reaper; log: Logger },
  ): Promise<Vm> {
    const qemu = [options.qemu, ...qemuArgs(layout)];
    const command = options.netnsPath ? ['nsenter', `--net=${options.netnsPath}`, '--', ...qemu] : qemu;
    options.log.debug({ command, cgroup: options.cgroupsPath }, 'starting QEMU');
    try {
      await execFileInCgroup(command[0]!, command.slice(1), options.cgroupsPath, { timeoutMs: LAUNCH_TIMEOUT_MS });
    } catch (err) {
      const stderr = err instanceof CgroupExecError ? err.stderr : '';
      const reason = stderr.trim().split('\n').pop() || (err as Error).message;
      throw failedPrecondition(`start the VM (${options.qemu}): ${reason}`);
    }
    const pid = Number.parseInt(await readFile(layout.pidFile, 'utf8'), 10);
    const startTime = readProcStat(pid)?.startTime;
    if (!startTime) throw failedPrecondition(`start the VM: QEMU (pid ${pid}) exited as it started; see ${layout.consoleLog}`);
    return new Vm({ pid, startTime }, layout.qmpSocket, watchExit(pid, options.reaper));
  }

  /**
   * After a restart: the VM an earlier run started, when `process` still runs QEMU under `name`
   * (the pid and its start time are the same process; its command line names this VM).
   */
  static async adopt(process: VmProcess, name: string, qmpSocket: string, reaper: Reaper): Promise<Vm> {
    const { pid, startTime } = process;
    if (!isSameProcessRunning(pid, startTime)) throw failedPrecondition(`its VM (QEMU, pid ${pid}) has exited`);
    if (!(await runsVm(pid, name))) throw failedPrecondition(`pid ${pid} does not run its VM ${name}`);
    const ended = reaper.watchForeign(pid).then(() => undefined);
    return new Vm(process, qmpSocket, ended);
  }

  /** The same VM, its QMP socket renamed to `qmpSocket` (a warm VM's files moved to its pod's directory). */
  movedTo(qmpSocket: string): Vm {
    return new Vm(this.process, qmpSocket, this.ended);
  }

  get running(): boolean {
    return isSameProcessRunning(this.process.pid, this.process.startTime);
  }

  /** Ends the VM: QMP `quit`, then SIGKILL after `timeoutMs`. Resolves once QEMU has gone. */
  async stop(timeoutMs: number, log: Logger): Promise<void> {
    if (!this.running) return this.ended;
    const deadline = new Promise<'late'>((resolve) => setTimeout(resolve, timeoutMs, 'late').unref());
    const asked = qmpCommand(this.qmpSocket, 'quit', timeoutMs).catch((err: Error) => log.warn({ err: err.message }, 'QMP quit failed'));
    if ((await Promise.race([asked.then(() => this.ended), deadline])) === 'late') {
      log.warn({ pid: this.process.pid, timeoutMs }, 'QEMU did not quit in time; killing it');
      if (this.running) killGone(this.process.pid);
    }
    await this.ended;
  }
}

/** The VM name (QEMU's -name option) the process `pid` runs, or undefined when it runs none. */
export async function vmNameOf(pid: number): Promise<string | undefined> {
  const args = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
  const index = args.indexOf('-name');
  return index >= 0 ? args[index + 1]?.split(',')[0] : undefined;
}

/** Whether `pid` runs QEMU for the VM named `name`. */
export async function runsVm(pid: number, name: string): Promise<boolean> {
  return (await vmNameOf(pid)) === name;
}

/**
 * Ends the QEMU that `pidFile` names when `isOurs` says the process is the VM meant (a pid alone
 * may have been reused): a daemon that died, or a launch that failed half-way, leaves one that
 * only the pid file names. Returns the pid it ended. Idempotent.
 */
export async function endVmByPidFile(
  pidFile: string,
  isOurs: (pid: number) => Promise<boolean>,
  reaper: Reaper,
): Promise<number | undefined> {
  const pid = Number.parseInt(await readFile(pidFile, 'utf8').catch(() => ''), 10);
  if (!(pid > 1) || !(await isOurs(pid))) return undefined;
  const ended = reaper.watchForeign(pid);
  killGone(pid);
  await ended;
  return pid;
}

/** SIGKILL to `pid`, which may have ended meanwhile (ESRCH): ended is what was asked. */
export function killGone(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** QEMU's end: it is kuasard's child once its launcher has exited (kuasard is a child subreaper). */
function watchExit(pid: number, reaper: Reaper): Promise<void> {
  return reaper.watch(pid).then(
    () => undefined,
    (err: unknown) => {
      // Reaped before the watch began (the orphan sweep): it ended as it started.
      if (hasErrnoCode(err, 'ECHILD')) return reaper.watchForeign(pid).then(() => undefined);
      throw err;
    },
  );
}
