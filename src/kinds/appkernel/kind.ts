// The appkernel kind: one gVisor sandbox per pod, made and driven by runsc. No pause image: the
// sandbox's root container runs kuasar's own idle program (native/kuasar-idle.c). runsc keeps
// each sandbox's state in its root, and the sandboxes outlive kuasard.
import { copyFile, mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { failedPrecondition } from '../../base/errors.js';
import { nativeProgram } from '../../base/native-programs.js';
import type { Platform, SavedState } from '../../base/model.js';
import type { SandboxContext, SandboxKind } from '../../kind-api/kind.js';
import { hostPlatform } from '../../linux/platform.js';
import { ownChildren, readProcStat } from '../../linux/proc.js';
import type { Reaper } from '../../linux/reaper.js';
import { runscProfile } from '../../oci/profiles.js';
import { OciRuntime } from '../../oci/runtime.js';
import { APPKERNEL_CAPABILITIES } from './capabilities.js';
import { AppkernelSandbox, releasePod, type AppkernelEnvironment } from './sandbox.js';
import { probePlatform } from './platform-probe.js';
import { IDLE_PROGRAM } from './sandbox-spec.js';

/** Built by `npm run build:native` next to the fd keeper: dist/native/kuasar-idle. */
export const IDLE_BINARY = nativeProgram(IDLE_PROGRAM);

/** The command name runsc's sandbox, gofers and stubs have (they run /proc/self/exe). */
const RUNSC_HELPER_NAME = 'exe';
/** How long the probe's runsc processes may take to end once `runsc do` has returned. */
const PROBE_HELPERS_TIMEOUT_MS = 5_000;

export type GvisorPlatform = 'systrap' | 'ptrace' | 'kvm';

export interface AppkernelKindOptions {
  /** The kind's state directory (`<state_dir>/appkernel`); sandboxes live in its subdirectories. */
  kindDir: string;
  reaper: Reaper;
  runsc: string;
  platform: GvisorPlatform;
  /** More global runsc flags from the configuration. */
  runscFlags: string[];
  log: Logger;
}

export class AppkernelKind implements SandboxKind {
  readonly name = 'appkernel';
  readonly capabilities = APPKERNEL_CAPABILITIES;
  private readonly env: AppkernelEnvironment;
  private readonly dirs: { runscRoot: string; logDir: string; consoleDir: string; idleRoot: string };

  constructor(private readonly options: AppkernelKindOptions) {
    const { kindDir } = options;
    this.dirs = {
      runscRoot: `${kindDir}.runsc`,
      logDir: `${kindDir}.runsc-log`,
      consoleDir: `${kindDir}.console`,
      idleRoot: `${kindDir}.idle-root`,
    };
    const runtime = (network: 'sandbox' | 'host') =>
      new OciRuntime({
        profile: runscProfile,
        binary: options.runsc,
        root: this.dirs.runscRoot,
        logDir: this.dirs.logDir,
        globalArgs: [`--platform=${options.platform}`, `--network=${network}`, ...options.runscFlags],
      });
    this.env = {
      runtimes: { sandboxNetwork: runtime('sandbox'), hostNetwork: runtime('host') },
      reaper: options.reaper,
      consoleDir: this.dirs.consoleDir,
      idleRoot: this.dirs.idleRoot,
    };
  }

  async init(): Promise<void> {
    // `runsc create` and `runsc start` fork a gofer per container and the sandbox process, then
    // exit: kuasard, a child subreaper, inherits them (and the sandbox's systrap stubs once the
    // sandbox has gone). runsc tells none of their pids and its own delete waits, until its
    // deadline, for a gofer nobody reaped. They run /proc/self/exe, which names them `exe`, a name
    // no program kuasard spawns itself has: unwatched, they are reaped as orphans.
    this.options.reaper.reapOrphans((stat) => stat.comm === RUNSC_HELPER_NAME);
    // Each runsc call's log file is removed when the call ends; those left were of calls the
    // previous daemon died in, and nothing reads them any more.
    await rm(this.dirs.logDir, { recursive: true, force: true });
    for (const dir of [this.options.kindDir, this.dirs.runscRoot, this.dirs.logDir, this.dirs.consoleDir]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    }
    // The idle program's root: world-readable (it runs as nobody), holding that program alone.
    await mkdir(this.dirs.idleRoot, { recursive: true, mode: 0o755 });
    // Sandboxes of the previous run may be serving the old copy: the new one replaces it whole.
    const staged = join(this.dirs.idleRoot, `.${IDLE_PROGRAM}.new`);
    await copyFile(IDLE_BINARY, staged).catch((err: Error) => {
      throw failedPrecondition(`appkernel: the idle program ${IDLE_BINARY} is missing (npm run build:native): ${err.message}`);
    });
    await rename(staged, join(this.dirs.idleRoot, IDLE_PROGRAM));
    const version = await this.env.runtimes.sandboxNetwork.version();
    const { platform, runsc, runscFlags, log } = this.options;
    const probeMs = await probePlatform(runsc, platform, `${this.options.kindDir}.probe`, runscFlags);
    await this.reapProbeHelpers();
    log.info({ runsc: version.version, platform, probeMs: Math.round(probeMs) }, 'gVisor platform works');
  }

  /**
   * `runsc do` leaves its sandbox, gofer and stubs to kuasard too. No pod of this kind runs yet,
   * so every child named `exe` is the probe's: each is reaped before the kind serves, rather than
   * after the orphan sweep's grace (a daemon's first seconds would show them as zombies).
   */
  private async reapProbeHelpers(): Promise<void> {
    const helpers = ownChildren().filter((pid) => readProcStat(pid)?.comm === RUNSC_HELPER_NAME);
    const reaped = Promise.allSettled(helpers.map((pid) => this.options.reaper.watch(pid)));
    const timeout = new Promise<'late'>((resolve) => setTimeout(resolve, PROBE_HELPERS_TIMEOUT_MS, 'late').unref());
    if ((await Promise.race([reaped, timeout])) === 'late') {
      this.options.log.warn({ pids: helpers }, "the platform probe's runsc processes are still running; the orphan sweep will reap them");
    }
  }

  platform(): Platform {
    return hostPlatform();
  }

  createSandbox(sandbox: SandboxContext): Promise<AppkernelSandbox> {
    return AppkernelSandbox.create(this.env, sandbox);
  }

  restoreSandbox(sandbox: SandboxContext, saved: SavedState | null): Promise<AppkernelSandbox> {
    return AppkernelSandbox.restore(this.env, sandbox, saved);
  }

  /** Whatever the pod may hold, found by its id: runsc knows its sandbox and containers by name. */
  async destroyLost(sandbox: SandboxContext): Promise<void> {
    await releasePod(this.env, sandbox);
  }
}
