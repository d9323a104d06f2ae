// kuasard's Prometheus metrics (prom-client), loaded only when `metrics_address` is set. What the
// engine holds (sandboxes, containers, pods' cgroup usage) and whether the fd keeper is up are read
// when a scrape asks, from the records in memory: nothing is counted per event, and a scrape
// waits on no lock an RPC takes. RPCs and stages are observed as they end.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { Code } from '../base/errors.js';
import type { ProcessStatus, SandboxPhase } from '../base/model.js';
import { observeStages } from '../base/stages.js';
import type { Sandbox } from '../engine/sandbox.js';
import type { Sandboxer } from '../engine/sandboxer.js';
import type { CallObserver } from '../services/call-log.js';
import { readPodUsages, type PodUsage } from './pod-usage.js';

const PHASES: readonly SandboxPhase[] = ['created', 'ready', 'stopped'];
const STATUSES: readonly ProcessStatus[] = ['created', 'running', 'paused', 'stopped'];
/** From a millisecond call to a vmm pod's start under TCG. */
const DURATION_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** How long a scrape waits for the pods' cgroup figures, all together. */
const POD_USAGE_TIMEOUT_MS = 2_000;

/** What a scrape reads of the daemon. */
export interface MetricsSources {
  readonly sandboxers: readonly Sandboxer[];
  readonly keeperUp: () => boolean;
}

export class DaemonMetrics {
  readonly registry = new Registry();
  private sources: MetricsSources = { sandboxers: [], keeperUp: () => false };
  private readonly rpcs: Counter<'kind' | 'service' | 'method' | 'code'>;
  private readonly rpcSeconds: Histogram<'kind' | 'service' | 'method'>;
  private readonly recoveredSandboxes: Gauge<'kind'>;
  private readonly recoveredContainers: Gauge<'kind'>;
  /** One read of the pods' usage shared by the collectors of one scrape. */
  private podSample: Promise<Map<Sandbox, PodUsage>> | undefined;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.rpcs = new Counter({
      name: 'kuasar_rpc_requests_total',
      help: 'RPCs answered, by kind, service (controller, task), method and status code',
      labelNames: ['kind', 'service', 'method', 'code'],
      registers,
    });
    this.rpcSeconds = new Histogram({
      name: 'kuasar_rpc_duration_seconds',
      help: 'How long RPCs took to answer',
      labelNames: ['kind', 'service', 'method'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    const stageSeconds = new Histogram({
      name: 'kuasar_stage_duration_seconds',
      help: "Stages of pods' lives (controller.start, runc.pin-namespaces, oci.create...), as logged in stage records",
      labelNames: ['stage'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    observeStages((stage, seconds) => stageSeconds.observe({ stage }, seconds));
    this.recoveredSandboxes = new Gauge({
      name: 'kuasar_recovered_sandboxes',
      help: 'Sandboxes taken over from the previous run of kuasard at this start',
      labelNames: ['kind'],
      registers,
    });
    this.recoveredContainers = new Gauge({
      name: 'kuasar_recovered_containers',
      help: 'Containers taken over from the previous run of kuasard at this start',
      labelNames: ['kind'],
      registers,
    });
    const sources = () => this.sources;
    /** A gauge by kind and state counted at scrape time: every state shown, at 0 when none is in it. */
    const byKindAndState = (name: string, help: string, states: readonly string[], statesOf: (sandbox: Sandbox) => Iterable<string>) =>
      new Gauge({
        name,
        help,
        labelNames: ['kind', 'state'],
        registers,
        collect() {
          this.reset();
          for (const sandboxer of sources().sandboxers) {
            const kind = sandboxer.kind.name;
            for (const state of states) this.set({ kind, state }, 0);
            for (const sandbox of sandboxer.list()) for (const state of statesOf(sandbox)) this.inc({ kind, state });
          }
        },
      });
    byKindAndState('kuasar_sandboxes', 'Sandboxes kuasard holds, by kind and phase', PHASES, (sandbox) => [sandbox.record.phase]);
    byKindAndState('kuasar_containers', 'Containers of the sandboxes kuasard holds, by kind and state', STATUSES, (sandbox) =>
      sandbox.record.containers.map((c) => c.status),
    );
    new Gauge({
      name: 'kuasar_fd_keeper_up',
      help: 'Whether the fd keeper holds the task sockets (1) or a kuasard crash would close them (0)',
      registers,
      collect() {
        this.set(sources().keeperUp() ? 1 : 0);
      },
    });
    /** Each kind's warm pool, for the kinds that keep one. */
    const pools = () =>
      sources().sandboxers.flatMap((s) => {
        const status = s.kind.warmPool?.();
        return status ? [{ kind: s.kind.name, status }] : [];
      });
    new Gauge({
      name: 'kuasar_warm_pool_sandboxes',
      help: "Sandboxes of each kind's warm pool: ready, booting, and the number it aims at (target)",
      labelNames: ['kind', 'state'],
      registers,
      collect() {
        this.reset();
        for (const { kind, status } of pools()) {
          for (const state of ['ready', 'booting', 'target'] as const) this.set({ kind, state }, status[state]);
        }
      },
    });
    new Counter({
      name: 'kuasar_warm_pool_events_total',
      help: 'What each warm pool did: pods given a warm sandbox (claim), pods that found it empty (cold), idle ones replaced, idle ones given back for memory (released)',
      labelNames: ['kind', 'event'],
      registers,
      collect() {
        this.reset();
        for (const { kind, status } of pools()) {
          this.inc({ kind, event: 'claim' }, status.claims);
          this.inc({ kind, event: 'cold' }, status.coldStarts);
          this.inc({ kind, event: 'replaced' }, status.replaced);
          this.inc({ kind, event: 'released' }, status.released);
        }
      },
    });
    new Gauge({
      name: 'kuasar_warm_pool_memory_bytes',
      help: "Host memory the ready sandboxes of each kind's warm pool hold (resident), at the pool's last check",
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        for (const { kind, status } of pools()) this.set({ kind }, status.memoryBytes);
      },
    });
    const sample = () => this.samplePods();
    new Counter({
      name: 'kuasar_pod_cpu_seconds_total',
      help: "CPU time used by each ready pod's cgroup",
      labelNames: ['kind', 'sandbox', 'namespace', 'pod'],
      registers,
      async collect() {
        const usages = await sample();
        this.reset();
        for (const [sandbox, usage] of usages) if (usage.cpuSeconds !== undefined) this.inc(podLabels(sandbox), usage.cpuSeconds);
      },
    });
    new Gauge({
      name: 'kuasar_pod_memory_bytes',
      help: "Memory in use by each ready pod's cgroup",
      labelNames: ['kind', 'sandbox', 'namespace', 'pod'],
      registers,
      async collect() {
        const usages = await sample();
        this.reset();
        for (const [sandbox, usage] of usages) if (usage.memoryBytes !== undefined) this.set(podLabels(sandbox), usage.memoryBytes);
      },
    });
  }

  /** What scrapes read from now on: the kinds served and the fd keeper. */
  watch(sources: MetricsSources): void {
    this.sources = sources;
  }

  /** Counts and times the calls of one service of one kind (for withCallLog). */
  rpcObserver(kind: string, service: string): CallObserver {
    return (method, code, seconds) => {
      this.rpcs.inc({ kind, service, method, code: Code[code] ?? String(code) });
      this.rpcSeconds.observe({ kind, service, method }, seconds);
    };
  }

  /** What a kind took over from the previous run at this start. */
  recovered(sandboxer: Sandboxer): void {
    const sandboxes = sandboxer.list();
    const kind = sandboxer.kind.name;
    this.recoveredSandboxes.set({ kind }, sandboxes.length);
    this.recoveredContainers.set(
      { kind },
      sandboxes.reduce((n, s) => n + s.record.containers.length, 0),
    );
  }

  /** The text a scrape answers with, and its content type. */
  async scrape(): Promise<{ text: string; contentType: string }> {
    return { text: await this.registry.metrics(), contentType: this.registry.contentType };
  }

  close(): void {
    observeStages(undefined);
  }

  private samplePods(): Promise<Map<Sandbox, PodUsage>> {
    // Both per-pod collectors start in the same scrape, at once: they share one read.
    this.podSample ??= (async () => {
      try {
        const ready = this.sources.sandboxers.flatMap((s) =>
          s.list().filter((sandbox) => sandbox.record.phase === 'ready' && sandbox.handle),
        );
        return await readPodUsages(ready, (sandbox) => sandbox.kindSandbox().metrics(), POD_USAGE_TIMEOUT_MS);
      } finally {
        this.podSample = undefined;
      }
    })();
    return this.podSample;
  }
}

function podLabels(sandbox: Sandbox) {
  return { kind: sandbox.kind.name, sandbox: sandbox.id, namespace: sandbox.record.pod.namespace, pod: sandbox.record.pod.name };
}
