// The memory part: the management plane's memory (kuasard and its helpers, or containerd's shims
// and pause processes for the baseline) with 0, then more and more pods running. One handler at
// a time, in memoryOrder: all of its pods up, read, all removed, next handler, so that one side's
// processes never sit in the other side's figures. Containers that ran inside kuasard leave memory
// behind that goes back to the system only over seconds, so each kuasar handler first waits for
// kuasard's memory to stop moving. For a kind whose pods keep processes of their own (a gVisor
// sandbox and its helpers), those are read with kuasard and reported beside it: they are the
// pods' cost, not the management plane's. The idle members of a warm pool (a kind's VMs booted
// for no pod yet) are neither: they are read apart at every point, and the pool is full at the
// idle point of its kind's phase.
import { setTimeout as sleep } from 'node:timers/promises';
import { listProcesses, type HostProcess } from '../devenv/processes.js';
import { memoryOrder, oneSeriesPerKind } from './handlers.js';
import { podProcessesOf } from './kinds.js';
import {
  cpuTimeNs,
  findManagementPlane,
  GC_SIGNAL,
  hasGcHook,
  hasSettled,
  readProcessMemory,
  sumMemory,
  sumPssByMapping,
  type PlaneLocator,
  type ProcessMemory,
} from './memory.js';
import { POOL, removeEveryPod, type PartContext } from './part-context.js';
import { inPool, removePods } from './pods.js';
import type { HandlerInfo, IdlePoolCpu, IdlePoolRead, MemoryPoint, MemoryResult, PodProcessesRead } from './results.js';
import { countsFor } from './settings.js';
import { median } from './stats.js';

/** Time between two memory reads of one point. */
const READ_INTERVAL_MS = 1_000;
/** Full garbage collections asked of kuasard before the after-GC reads, a read interval apart. */
const GC_COLLECTIONS = 3;
/**
 * Before a kuasar handler's memory phase, kuasard's private memory must have moved by less than
 * this from one read to the next (a second apart) this many times in a row; the wait gives up
 * after the timeout (and says so in the results).
 */
const QUIET_STEP_KB = 512;
const QUIET_STEPS = 3;
const QUIET_TIMEOUT_MS = 60_000;
/** The window over which the CPU of a warm pool's idle members is read. */
const IDLE_CPU_WINDOW_MS = 10_000;

type PlaneRead = ProcessMemory & { processes: number; pausePssKb: number; podProcesses?: PodProcessesRead; idlePool?: IdlePoolRead };

export async function measureMemory(ctx: PartContext): Promise<void> {
  // A kind with a warm pool: its warm series, pods the pool serves while it can, the pool's idle VMs read apart.
  for (const handler of memoryOrder(oneSeriesPerKind(ctx.handlers, 'warm'))) {
    const podProcesses = podProcessesOf(handler.kind);
    const locator: PlaneLocator = {
      kuasardConfig: ctx.env.paths.kuasardConfig,
      containerdSocket: ctx.env.paths.containerdSocket,
      cgroupName: ctx.env.names.cgroupName,
      ...(podProcesses ? { podProcesses } : {}),
    };
    await removeEveryPod(ctx.env);
    const entry: MemoryResult = { points: [], helpers: [], failures: [] };
    ctx.data.memory[handler.handler] = entry;
    await new HandlerMemoryPhase(ctx, locator, handler, entry).run();
  }
}

/** One handler's memory phase, recorded in its entry. */
class HandlerMemoryPhase {
  constructor(
    private readonly ctx: PartContext,
    private readonly locator: PlaneLocator,
    private readonly handler: HandlerInfo,
    private readonly entry: MemoryResult,
  ) {}

  async run(): Promise<void> {
    const { ctx, handler, entry } = this;
    const counts = countsFor(ctx.settings, handler.kind).memoryPods;
    ctx.progress.begin(`memory, ${handler.handler}`, counts[counts.length - 1] ?? 0);
    if (handler.side === 'kuasar') {
      // The idle point holds the full pool: what it costs per idle member.
      if (handler.pool) await ctx.untilPoolsFull();
      await this.waitForQuietKuasard();
      entry.idle = await this.readPoint(0);
      if (handler.pool) entry.idlePoolCpu = await this.readIdlePoolCpu();
    }
    const running: string[] = [];
    try {
      for (const count of counts) {
        ctx.signal.throwIfAborted();
        const outcomes = await inPool(
          Array.from({ length: Math.max(0, count - running.length) }),
          POOL,
          async () => {
            const pod = await ctx.startPod(handler);
            ctx.progress.tick();
            return pod;
          },
          ctx.signal,
        );
        for (const outcome of outcomes) {
          if (outcome.status === 'fulfilled') running.push(outcome.value.podId);
          else if (!ctx.signal.aborted) entry.failures.push(`filling up to ${count} pods: ${(outcome.reason as Error).message}`);
        }
        ctx.signal.throwIfAborted();
        await sleep(ctx.settings.settleMs, undefined, { signal: ctx.signal });
        entry.points.push(await this.readPoint(running.length));
      }
    } finally {
      ctx.progress.note(`  · removing ${running.length} ${handler.handler} pods`);
      entry.failures.push(...(await removePods(ctx.env, running, POOL)));
    }
    const last = entry.points[entry.points.length - 1];
    ctx.progress.end(last ? `${(last.pssKb / 1024).toFixed(1)} MiB at ${last.pods} pods` : '');
  }

  /** The handler's management plane, the warm pools' idle members (as they are now) told apart. */
  private planeOf(processes: readonly HostProcess[]) {
    const idlePools = this.ctx.pools.map((pool) => ({ argumentPrefix: pool.pool.argumentPrefix, idleIds: pool.idleIds() }));
    return findManagementPlane(processes, { ...this.locator, idlePools });
  }

  /** The CPU the pool's idle members use over IDLE_CPU_WINDOW_MS (an emulated guest ticks even when idle). */
  private async readIdlePoolCpu(): Promise<IdlePoolCpu | undefined> {
    const members = () => this.planeOf(listProcesses()).idlePool.map((p) => p.pid);
    const pids = members();
    if (pids.length === 0) return undefined;
    const cpuNs = () => pids.reduce((sum, pid) => sum + cpuTimeNs(pid), 0);
    const before = cpuNs();
    const began = performance.now();
    await sleep(IDLE_CPU_WINDOW_MS, undefined, { signal: this.ctx.signal });
    const used = cpuNs() - before;
    const windowMs = performance.now() - began;
    // A member claimed or ended meanwhile would not be idle the whole window: no figure then.
    if (members().join() !== pids.join()) return undefined;
    return { members: pids.length, windowMs, percentPerMember: (used / 1e6 / windowMs / pids.length) * 100 };
  }

  /**
   * Waits until kuasard's private memory stops moving, read a second apart after a collection
   * (when it has the GC hook). What earlier phases left behind must not count as this handler's:
   * containers that ran inside kuasard above all, MiBs each, whose memory goes back to the system over seconds after
   * they end (with only the settle time, a runc line fell by 250 KiB per pod).
   */
  private async waitForQuietKuasard(): Promise<void> {
    const began = Date.now();
    const series: number[] = [];
    while (!hasSettled(series, QUIET_STEP_KB, QUIET_STEPS)) {
      if (Date.now() - began > QUIET_TIMEOUT_MS) {
        const last = series.slice(-QUIET_STEPS - 1).map((kb) => (kb / 1024).toFixed(1));
        this.entry.failures.push(`kuasard's memory was still moving after ${QUIET_TIMEOUT_MS / 1000} s (private, MiB: ${last.join(', ')})`);
        break;
      }
      const kuasard = findManagementPlane(listProcesses(), this.locator).kuasard;
      if (!kuasard) throw new Error('kuasard is not running');
      if (hasGcHook(kuasard.pid)) process.kill(kuasard.pid, GC_SIGNAL);
      await sleep(READ_INTERVAL_MS, undefined, { signal: this.ctx.signal });
      series.push(readProcessMemory(kuasard.pid)?.privateKb ?? 0);
    }
    this.entry.quietMs = Date.now() - began;
  }

  /**
   * Reads the handler's management plane a few times, a second apart (the point is their
   * median). For kuasard started with the GC hook: then makes it collect its garbage a few
   * times and reads again.
   */
  private async readPoint(pods: number): Promise<MemoryPoint> {
    const reads = await this.readSeries();
    const last = reads[reads.length - 1];
    const point: MemoryPoint = {
      pods,
      pssKb: median(reads.map((r) => r.pssKb)),
      rssKb: median(reads.map((r) => r.rssKb)),
      privateKb: median(reads.map((r) => r.privateKb)),
      processes: last?.processes ?? 0,
      reads: reads.map((r) => r.pssKb),
      ...(this.handler.side === 'baseline' ? { pausePssKb: median(reads.map((r) => r.pausePssKb)) } : {}),
      ...podProcessesMedian(reads),
      ...idlePoolMedian(reads),
    };
    const kuasard = this.handler.side === 'kuasar' ? findManagementPlane(listProcesses(), this.locator).kuasard : undefined;
    if (kuasard && hasGcHook(kuasard.pid)) {
      // One collection frees the garbage; V8 gives the pages back over the next few.
      for (let i = 0; i < GC_COLLECTIONS; i++) {
        process.kill(kuasard.pid, GC_SIGNAL);
        await sleep(READ_INTERVAL_MS, undefined, { signal: this.ctx.signal });
      }
      const afterGc = await this.readSeries();
      point.afterGc = {
        pssKb: median(afterGc.map((r) => r.pssKb)),
        privateKb: median(afterGc.map((r) => r.privateKb)),
        reads: afterGc.map((r) => r.pssKb),
      };
    }
    return point;
  }

  /** settings.memoryReads reads of the handler's management plane, a second apart; kuasard's helpers are noted in the entry. */
  private async readSeries(): Promise<PlaneRead[]> {
    const reads: PlaneRead[] = [];
    for (let i = 0; i < this.ctx.settings.memoryReads; i++) {
      if (i > 0) await sleep(READ_INTERVAL_MS, undefined, { signal: this.ctx.signal });
      const processes = listProcesses();
      const plane = this.planeOf(processes);
      let pids: number[];
      if (this.handler.side === 'kuasar') {
        if (!plane.kuasard) throw new Error('kuasard is not running');
        for (const helper of plane.kuasardHelpers) {
          const line = `${helper.pid} ${helper.cmdline}`;
          if (!this.entry.helpers.includes(line)) this.entry.helpers.push(line);
        }
        pids = [plane.kuasard.pid, ...plane.kuasardHelpers.map((p) => p.pid)];
      } else {
        pids = plane.shims.map((p) => p.pid);
      }
      reads.push({
        ...sumMemory(pids),
        pausePssKb: sumMemory(plane.pauses.map((p) => p.pid)).pssKb,
        ...podProcessesRead(plane.podProcesses, this.locator),
        ...(this.ctx.pools.length > 0 ? { idlePool: idlePoolRead(plane.idlePool) } : {}),
      });
    }
    return reads;
  }
}

/** The totals of the pods' own processes, for a kind whose pods have them. */
function podProcessesRead(groups: ReadonlyMap<string, readonly HostProcess[]>, locator: PlaneLocator): { podProcesses?: PodProcessesRead } {
  if (!locator.podProcesses) return {};
  const pids = [...groups.values()].flat().map((p) => p.pid);
  const { pssKb, privateKb, processes } = sumMemory(pids);
  return { podProcesses: { pssKb, pssByMapping: sumPssByMapping(pids), privateKb, processes, pods: groups.size } };
}

/** The median of the reads' pod-process totals, when they have them. */
function podProcessesMedian(reads: readonly PlaneRead[]): { podProcesses?: PodProcessesRead } {
  const of = reads.flatMap((r) => (r.podProcesses ? [r.podProcesses] : []));
  if (of.length === 0) return {};
  const last = of[of.length - 1] as PodProcessesRead;
  return {
    podProcesses: {
      pssKb: median(of.map((r) => r.pssKb)),
      pssByMapping: {
        anonymousKb: median(of.map((r) => r.pssByMapping.anonymousKb)),
        executableAnonymousKb: median(of.map((r) => r.pssByMapping.executableAnonymousKb)),
        fileKb: median(of.map((r) => r.pssByMapping.fileKb)),
      },
      privateKb: median(of.map((r) => r.privateKb)),
      processes: last.processes,
      pods: last.pods,
    },
  };
}

/** The idle pool members' totals. */
function idlePoolRead(processes: readonly HostProcess[]): IdlePoolRead {
  const { pssKb, rssKb, privateKb, processes: members } = sumMemory(processes.map((p) => p.pid));
  return { members, pssKb, rssKb, privateKb };
}

/** The median of the reads' idle-pool totals, when they have them. */
function idlePoolMedian(reads: readonly PlaneRead[]): { idlePool?: IdlePoolRead } {
  const of = reads.flatMap((r) => (r.idlePool ? [r.idlePool] : []));
  if (of.length === 0) return {};
  return {
    idlePool: {
      members: median(of.map((r) => r.members)),
      pssKb: median(of.map((r) => r.pssKb)),
      rssKb: median(of.map((r) => r.rssKb)),
      privateKb: median(of.map((r) => r.privateKb)),
    },
  };
}
