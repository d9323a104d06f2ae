// The runc kind: pods are Linux namespaces and cgroups on the host, containers are run by an
// OCI runtime CLI (crun where its self-test passes at start, runc otherwise: runtime-choice.ts). No process stays per pod: the pod's IPC and UTS
// namespaces are pinned by bind mounts, its network namespace is the one CRI's CNI set up. Only
// a pod whose containers share one PID namespace gets a process: the holder of that namespace.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Platform, SavedState } from '../../base/model.js';
import type { SandboxContext, SandboxKind } from '../../kind-api/kind.js';
import { RUNC_CAPABILITIES } from './capabilities.js';
import { makePrivateBindOfItself, unmountPrivateBindOfItself } from '../../linux/mount.js';
import { hostPlatform } from '../../linux/platform.js';
import type { Reaper } from '../../linux/reaper.js';
import { crunProfile } from '../../oci/profiles.js';
import { OciRuntime } from '../../oci/runtime.js';
import { podStateCodec } from './pod-state.js';
import { chooseOciRuntimeOncePerBoot } from './runtime-choice.js';
import { releasePod, RuncSandbox, type RuncEnvironment } from './sandbox.js';

export interface RuncKindOptions {
  /** The kind's state directory (`<state_dir>/runc`); sandboxes live in its subdirectories. */
  kindDir: string;
  /** The OCI runtime CLI: "auto", runc, crun, or a path. */
  ociRuntime: string;
  reaper: Reaper;
  log: Logger;
}

export class RuncKind implements SandboxKind {
  readonly name = 'runc';
  readonly capabilities = RUNC_CAPABILITIES;
  private envOrUndefined: RuncEnvironment | undefined;
  private readonly runtimeDirs: { root: string; logDir: string; consoleDir: string };

  constructor(private readonly options: RuncKindOptions) {
    this.runtimeDirs = { root: `${options.kindDir}.oci`, logDir: `${options.kindDir}.oci-log`, consoleDir: `${options.kindDir}.console` };
  }

  /** Set by init, which chooses the runtime; nothing is asked of the kind before. */
  private get env(): RuncEnvironment {
    if (!this.envOrUndefined) throw new Error('the runc kind is used before its init');
    return this.envOrUndefined;
  }

  async init(): Promise<void> {
    // Each runtime call's log file is removed when the call ends; those left were of calls the
    // previous daemon died in, and nothing reads them any more.
    await rm(this.runtimeDirs.logDir, { recursive: true, force: true });
    for (const dir of [this.options.kindDir, this.runtimeDirs.root, this.runtimeDirs.logDir, this.runtimeDirs.consoleDir]) {
      await mkdir(dir, { recursive: true, mode: 0o700 });
    }
    // Namespace files can only be bind-mounted below a mount that does not propagate.
    await makePrivateBindOfItself(this.options.kindDir);
    const scratch = await mkdtemp(`${this.options.kindDir}.self-test-`);
    const choice = await chooseOciRuntimeOncePerBoot(this.options.ociRuntime, scratch, `${this.options.kindDir}.oci-runtime.json`).finally(
      () => rm(scratch, { recursive: true, force: true }),
    );
    const { root, logDir, consoleDir } = this.runtimeDirs;
    const runtime = new OciRuntime({ binary: choice.binary, profile: choice.profile, root, logDir });
    const version = await runtime.version();
    this.options.log.info({ binary: choice.binary, version: version.version, why: choice.why }, `OCI runtime: ${choice.profile.name}`);
    // A `crun exec` whose program cannot run leaves its forked child to us (a child subreaper)
    // as a zombie, still counted in the container's cgroup: crun's kill of the container then
    // waits for that cgroup to empty, and the pod could never be stopped.
    if (choice.profile === crunProfile) this.options.reaper.reapOrphans((stat) => stat.comm === crunProfile.name);
    this.envOrUndefined = { runtime, reaper: this.options.reaper, consoleDir };
  }

  platform(): Platform {
    return hostPlatform();
  }

  createSandbox(sandbox: SandboxContext): Promise<RuncSandbox> {
    return RuncSandbox.create(this.env, sandbox);
  }

  restoreSandbox(sandbox: SandboxContext, saved: SavedState | null): Promise<RuncSandbox> {
    return RuncSandbox.restore(this.env, sandbox, saved);
  }

  /** Whatever the pod holds, found from its directory, with its saved state only where it can be believed. */
  async destroyLost(sandbox: SandboxContext): Promise<void> {
    let state = null;
    try {
      state = podStateCodec(sandbox.record.id, sandbox.dir).load(sandbox.record.kindState, `sandbox ${sandbox.record.id}`);
    } catch {
      // Not believed: releasePod looks for what it may hold instead.
    }
    await releasePod(this.env, sandbox, state);
  }

  async closeIdle(): Promise<void> {
    // Pods pin their namespaces below the private bind init made; with no pod left it can go.
    // A directory left for inspection (an unreadable state file) may still hold mounts: the bind
    // then stays, as it must.
    await unmountPrivateBindOfItself(this.options.kindDir);
  }
}
