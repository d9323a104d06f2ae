// The warm pool: VMs booted ahead of the pods that will run in them (warm-vm.ts), so that a pod's
// Start takes one whose agent already answers instead of waiting for a boot. Each is used once:
// a pod's VM is never given back, the pool boots a fresh one in its place.
//
// Pacing, so that refilling never starves the pods being started: the pool boots one VM at a
// time, begins a boot only while no vmm pod's Start is under way and `warm_pool_refill_delay_ms`
// after the last one ended (kubelet creates and starts the pod's containers next), and boots it
// in a cgroup at the least CPU weight (vm-cgroup.ts), so that a boot under way runs on CPU time that nothing else
// wants. Under a steady stream of pod starts the pool therefore shrinks and pods start cold: a
// pool cannot be refilled faster than the host can boot VMs besides its other work.
//
// Health: a VM whose QEMU exits is replaced at once; every `warm_pool_check_interval_ms` each idle
// VM's agent must answer, else it is ended and replaced. Memory: the pool holds at most
// `warm_pool_max_memory_mib` (its VMs' resident memory, or their size while they boot) and gives
// its VMs back, one per check, while the host's MemAvailable is below
// `warm_pool_min_host_available_mib`. A restart of kuasard ends the pool an earlier run left and
// boots a new one.
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { WarmPoolStatus } from '../../kind-api/kind.js';
import type { VmmConfig } from './config.js';
import type { ClaimableVm, WarmVmPool } from './environment.js';
import type { VmSize } from './vm-cgroup.js';

const MIB = 1024 * 1024;

/** How long an idle VM's agent may take to answer a health check. */
const CHECK_TIMEOUT_MS = 5_000;

/** The pause after a boot that failed, doubled after each further failure up to the maximum. */
const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 60_000;

/**
 * A warm VM boots at the least CPU weight: on a busy host it may take several times a pod's
 * boot time-out, which is no reason to give it up.
 */
const WARM_BOOT_TIMEOUT_FACTOR = 3;

/** One VM of the pool as the pool drives it (warm-vm.ts; a stand-in in unit tests). */
export interface PoolVm extends ClaimableVm {
  /** QEMU's pid once launched. */
  readonly pid: number | undefined;
  /** Settles once QEMU has exited. */
  readonly ended: Promise<void>;
  /** Boots it within `timeoutMs`; on failure it has removed what it made. */
  boot(timeoutMs: number): Promise<{ bootId: string }>;
  /** Whether its agent answers within `timeoutMs`. */
  answers(timeoutMs: number): Promise<boolean>;
}

export interface WarmPoolOptions {
  config: Pick<
    VmmConfig,
    | 'warm_pool'
    | 'warm_pool_max_memory_mib'
    | 'warm_pool_min_host_available_mib'
    | 'warm_pool_check_interval_ms'
    | 'warm_pool_refill_delay_ms'
    | 'boot_timeout_ms'
    | 'qemu_overhead_mib'
  >;
  /** The size of every warm VM: a pod fits when it needs no more. */
  size: VmSize;
  /** A new VM, not booted yet. */
  newVm: () => PoolVm;
  /** The host's memory as the pool reads it: a process's resident bytes, and MemAvailable. */
  memory: { residentBytes: (pid: number) => Promise<number | undefined>; hostAvailableBytes: () => Promise<number> };
  log: Logger;
}

export class WarmPool implements WarmVmPool {
  private readonly ready: PoolVm[] = [];
  private booting: PoolVm | null = null;
  private startsUnderWay = 0;
  /** When the last pod's Start ended (ms since the epoch). */
  private lastStartEnded = 0;
  private closed = false;
  private underPressure = false;
  private checking = false;
  /** Resident memory of each ready VM at the last check, by its id. */
  private readonly resident = new Map<string, number>();
  private readonly counts = { claims: 0, coldStarts: 0, replaced: 0, released: 0 };
  private wake: () => void = () => undefined;
  private filling: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private markClosed: () => void = () => undefined;
  /** Settles when the pool closes: ends any pause. */
  private readonly closing = new Promise<void>((resolve) => {
    this.markClosed = resolve;
  });
  readonly size: VmSize;

  constructor(private readonly options: WarmPoolOptions) {
    this.size = options.size;
  }

  private get config(): WarmPoolOptions['config'] {
    return this.options.config;
  }

  private get log(): Logger {
    return this.options.log;
  }

  /** Begins filling the pool, in the background, and checking it every `warm_pool_check_interval_ms`. */
  start(): void {
    this.log.info({ size: this.config.warm_pool, vm: this.size }, 'warm pool: filling');
    this.filling = this.fill();
    this.timer = setInterval(() => void this.check(), this.config.warm_pool_check_interval_ms).unref();
  }

  /** A ready VM for a pod, the longest ready first, or undefined when there is none; the pool refills. */
  take(): PoolVm | undefined {
    const vm = this.ready.shift();
    if (vm) {
      this.resident.delete(vm.id);
      this.counts.claims++;
    } else this.counts.coldStarts++;
    this.wake();
    return vm;
  }

  /** Marks a pod's Start as under way: no boot begins until the returned function has been called. */
  startUnderWay(): () => void {
    this.startsUnderWay++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.startsUnderWay--;
      this.lastStartEnded = Date.now();
      this.wake();
    };
  }

  status(): WarmPoolStatus {
    return {
      target: this.target(),
      ready: this.ready.length,
      booting: this.booting ? 1 : 0,
      ...this.counts,
      memoryBytes: [...this.resident.values()].reduce((sum, bytes) => sum + bytes, 0),
    };
  }

  /** Daemon exit: no more boots; every VM of the pool (the one booting too) is ended. */
  async close(): Promise<void> {
    this.closed = true;
    this.markClosed();
    clearInterval(this.timer);
    this.wake();
    await this.booting?.end();
    await this.filling;
    await Promise.all(this.ready.splice(0).map((vm) => vm.end()));
  }

  /** One VM's host memory for the budget: the most any ready VM holds, or its size and QEMU's own before one was measured. */
  private perVmBytes(): number {
    const measured = Math.max(0, ...this.resident.values());
    return measured || (this.size.memoryMib + this.config.qemu_overhead_mib) * MIB;
  }

  /** How many VMs the pool keeps now: its size, less what the memory budget allows, none under pressure. */
  private target(): number {
    if (this.underPressure) return 0;
    const { warm_pool, warm_pool_max_memory_mib } = this.config;
    return Math.min(warm_pool, Math.floor((warm_pool_max_memory_mib * MIB) / this.perVmBytes()));
  }

  /** Waits `ms`, or less when the pool closes meanwhile (and never keeps the process up). */
  private pause(ms: number): Promise<unknown> {
    return Promise.race([sleep(ms, undefined, { ref: false }), this.closing]);
  }

  private changed(): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
    });
  }

  /** Boots VMs one at a time while the pool is short and no pod's Start is under way. */
  private async fill(): Promise<void> {
    let retryMs = RETRY_FIRST_MS;
    while (!this.closed) {
      if (this.ready.length >= this.target() || this.startsUnderWay > 0) {
        await this.changed();
        continue;
      }
      // A pod's containers are created and started right after its sandbox: let them go first.
      const graceLeft = this.lastStartEnded + this.config.warm_pool_refill_delay_ms - Date.now();
      if (graceLeft > 0) {
        await Promise.race([this.pause(graceLeft), this.changed()]);
        continue;
      }
      const vm = this.options.newVm();
      this.booting = vm;
      try {
        const check = await vm.boot(this.config.boot_timeout_ms * WARM_BOOT_TIMEOUT_FACTOR);
        if (this.closed) {
          await vm.end();
          break;
        }
        this.ready.push(vm);
        this.watch(vm);
        this.log.info({ warmVm: vm.id, pid: vm.pid, bootId: check.bootId, ready: this.ready.length }, 'warm VM ready');
        retryMs = RETRY_FIRST_MS;
      } catch (err) {
        if (this.closed) break;
        this.log.warn({ err, retryInMs: retryMs }, 'warm pool: a VM did not boot; trying again later');
        await this.pause(retryMs);
        retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
      } finally {
        this.booting = null;
      }
    }
  }

  /** A ready VM whose QEMU exits is dropped and replaced. */
  private watch(vm: PoolVm): void {
    void vm.ended.then(() => {
      if (!this.ready.includes(vm)) return;
      this.log.warn({ warmVm: vm.id, pid: vm.pid }, 'warm pool: an idle VM exited; replacing it');
      void this.drop(vm, 'replaced');
    });
  }

  /** Takes `vm` out of the pool and ends it. */
  private async drop(vm: PoolVm, why: 'replaced' | 'released'): Promise<void> {
    const index = this.ready.indexOf(vm);
    if (index < 0) return;
    this.ready.splice(index, 1);
    this.resident.delete(vm.id);
    this.counts[why]++;
    this.wake();
    await vm.end().catch((err: unknown) => this.log.error({ err, warmVm: vm.id }, 'warm pool: ending a VM failed'));
  }

  /** The periodic check: each idle VM answers, the pool's memory stays within its budget and the host's room. */
  async check(): Promise<void> {
    if (this.closed || this.checking) return;
    this.checking = true;
    try {
      await this.checkOnce();
    } finally {
      this.checking = false;
    }
  }

  private async checkOnce(): Promise<void> {
    for (const vm of [...this.ready]) {
      if (await vm.answers(CHECK_TIMEOUT_MS)) continue;
      this.log.warn({ warmVm: vm.id, pid: vm.pid }, 'warm pool: an idle VM stopped answering; replacing it');
      await this.drop(vm, 'replaced');
    }
    for (const vm of this.ready) {
      const bytes = vm.pid ? await this.options.memory.residentBytes(vm.pid) : undefined;
      if (bytes !== undefined) this.resident.set(vm.id, bytes);
    }
    const availableMib = (await this.options.memory.hostAvailableBytes()) / MIB;
    const floorMib = this.config.warm_pool_min_host_available_mib;
    // Pressure ends only once one more VM would still leave the host its room.
    const wasUnderPressure = this.underPressure;
    this.underPressure = availableMib < floorMib || (wasUnderPressure && availableMib < floorMib + this.perVmBytes() / MIB);
    if (this.underPressure !== wasUnderPressure) {
      this.log.warn(
        { availableMib: Math.round(availableMib), floorMib },
        this.underPressure ? 'warm pool: the host is short of memory; giving VMs back' : 'warm pool: the host has room again; refilling',
      );
    }
    const surplus = this.underPressure ? Math.min(1, this.ready.length) : Math.max(0, this.ready.length - this.target());
    // The newest go first: the oldest are the next to be taken.
    for (const vm of this.ready.slice(this.ready.length - surplus)) {
      this.log.info({ warmVm: vm.id, target: this.target() }, 'warm pool: giving a VM back (memory)');
      await this.drop(vm, 'released');
    }
    this.wake();
  }
}
