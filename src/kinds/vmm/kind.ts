// The vmm kind: one QEMU VM per pod. At start it settles the accelerator once (KVM only when a
// probe shows a vCPU really runs: under nested virtualisation /dev/kvm may open and hang). What a
// pod needs besides (QEMU, the guest image) is checked before the kind starts (checks.ts) and
// again at each Controller Create: a pod's error says what went missing since.
import { access, constants, mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import { failedPrecondition } from '../../base/errors.js';
import type { Platform, SavedState } from '../../base/model.js';
import { checkImageDir } from '../../guest/image/layout.js';
import type { SandboxContext, SandboxKind, WarmPoolStatus } from '../../kind-api/kind.js';
import type { KeptDescriptors } from '../../linux/fd-keeper.js';
import { makePrivateBindOfItself, unmountPrivateBindOfItself } from '../../linux/mount.js';
import { hostPlatform } from '../../linux/platform.js';
import type { Reaper } from '../../linux/reaper.js';
import { probeAccelOncePerBoot } from './accel-probe.js';
import { VMM_CAPABILITIES } from './capabilities.js';
import type { VmmConfig } from './config.js';
import { GuestClocks } from './guest-clocks.js';
import type { VmmEnvironment } from './environment.js';
import { podVmSize, releaseLostPod, VmmSandbox } from './sandbox.js';
import { removeWarmCgroupParent } from './vm-cgroup.js';
import { WarmPool } from './warm-pool.js';
import { WarmVm } from './warm-vm.js';
import { hostAvailableBytes, residentBytes } from '../../linux/memory.js';

/** The command name of every QEMU system emulator (`qemu-system-x86_64` shows as `qemu-system-x86`). */
const QEMU_COMM_PREFIX = 'qemu-system-';

/** How often the host's clocks are compared for a jump (a resume from suspend is noticed this soon). */
const CLOCK_TICK_MS = 5_000;

/** How long the KVM probe may take before KVM counts as hanging. */
export const KVM_PROBE_TIMEOUT_MS = 3_000;

export interface VmmKindOptions {
  kindDir: string;
  reaper: Reaper;
  log: Logger;
  config: VmmConfig;
  keptDescriptors: KeptDescriptors;
}

export class VmmKind implements SandboxKind {
  readonly name = 'vmm';
  readonly capabilities = VMM_CAPABILITIES;
  private env: VmmEnvironment | undefined;
  private pool: WarmPool | undefined;

  constructor(private readonly options: VmmKindOptions) {}

  async init(): Promise<void> {
    const { config, log, reaper } = this.options;
    // QEMU's -daemonize forks twice: the middle process exits at once, re-parented to kuasard (a
    // child subreaper) by the first one's exit, and nobody knows its pid. The VM itself is
    // watched by the pid from its pid file, which claims it before this sweep would.
    reaper.reapOrphans((stat) => stat.comm.startsWith(QEMU_COMM_PREFIX));
    // Each pod's share holds mounts (rootfs, volumes): below a mount that does not propagate,
    // so that none of them leaks into other mount namespaces, or back into a volume that is an
    // ancestor of the state directory.
    await mkdir(this.options.kindDir, { recursive: true, mode: 0o700 });
    await makePrivateBindOfItself(this.options.kindDir);
    const syncEveryMs = config.clock_sync_interval_s * 1000;
    const clocks = new GuestClocks({ intervalMs: syncEveryMs, tickMs: Math.min(CLOCK_TICK_MS, syncEveryMs || CLOCK_TICK_MS), log });
    // QEMU and the guest image were checked before the kind was built (checks.ts).
    const env: VmmEnvironment = { config, accel: await this.chooseAccel(), reaper, clocks, kept: this.options.keptDescriptors };
    const { kindDir } = this.options;
    await WarmVm.endLeftovers(kindDir, env, log);
    if (config.warm_pool > 0) {
      // A warm VM is what a pod without limits gets: the pods that fit it are the common ones.
      const size = podVmSize(undefined, config);
      const poolLog = log.child({ pool: 'warm' });
      this.pool = new WarmPool({
        config,
        size,
        newVm: () => WarmVm.prepare(kindDir, size, env, poolLog),
        memory: { residentBytes, hostAvailableBytes },
        log: poolLog,
      });
      env.pool = this.pool;
      this.pool.start();
    }
    this.env = env;
  }

  private async chooseAccel(): Promise<'kvm' | 'tcg'> {
    const { config, log, kindDir } = this.options;
    if (config.accel === 'tcg') return 'tcg';
    const probe = await probeAccelOncePerBoot(config.qemu, 'kvm', `${kindDir}.probe`, KVM_PROBE_TIMEOUT_MS);
    if (probe.works) {
      log.info({ probeMs: Math.round(probe.ms), cached: probe.cached }, 'KVM works: VMs run accelerated');
      return 'kvm';
    }
    if (config.accel === 'kvm') throw failedPrecondition(`vmm: accel = "kvm" but KVM does not work here: ${probe.reason}`);
    log.warn({ reason: probe.reason, cached: probe.cached }, 'KVM does not work here: VMs run under TCG emulation, many times slower');
    return 'tcg';
  }

  /** What a pod's VM needs and this host lacks, each with how to get it. */
  private async missingPieces(): Promise<string[]> {
    const { config } = this.options;
    const image = await checkImageDir(config.image_dir);
    const missing = image.complete ? [] : [`the guest image's ${image.missing.join(', ')} in ${config.image_dir} (build it: ${image.fix})`];
    if (config.qemu.startsWith('/')) {
      await access(config.qemu, constants.X_OK).catch(() => missing.push(`${config.qemu} (install qemu-system-x86)`));
    }
    return missing;
  }

  platform(): Platform {
    return hostPlatform();
  }

  private get environment(): VmmEnvironment {
    if (!this.env) throw failedPrecondition('vmm: the kind has not been initialised');
    return this.env;
  }

  async createSandbox(sandbox: SandboxContext): Promise<VmmSandbox> {
    const missing = await this.missingPieces();
    if (missing.length > 0) throw failedPrecondition(`vmm: cannot run a VM: missing ${missing.join('; ')}`);
    return VmmSandbox.create(this.environment, sandbox);
  }

  restoreSandbox(sandbox: SandboxContext, saved: SavedState | null): Promise<VmmSandbox> {
    return VmmSandbox.restore(this.environment, sandbox, saved);
  }

  async destroyLost(sandbox: SandboxContext): Promise<void> {
    await releaseLostPod(sandbox, this.options.reaper);
  }

  async close(): Promise<void> {
    await this.pool?.close();
    if (this.env) await removeWarmCgroupParent(this.env.config);
  }

  warmPool(): WarmPoolStatus | undefined {
    return this.pool?.status();
  }

  async closeIdle(): Promise<void> {
    // No pod's share is left below the private bind init made: it can go.
    await unmountPrivateBindOfItself(this.options.kindDir);
  }
}
