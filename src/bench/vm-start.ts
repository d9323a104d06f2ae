// A VM pod's start, phase by phase, for the kinds whose pods are VMs (KindBenchmark.vmStart): VMM
// start, firmware and kernel loading, kernel boot, agent ready, the pod's set-up in the guest, the
// container created and started, and what is left (containerd's work and the transport). Each
// phase is the time of some of kuasard's stage records of the start, less that of stages inside
// them that are phases of their own; the accelerator the VMs ran with comes from kuasard's log. A
// warm start (a VM of the kind's warm pool) has phases of its own: read network, claim, the pod's
// set-up in the guest, the container created and started.
import { findKind } from '../kinds/index.js';
import type { StartPhase } from '../kind-api/registration.js';
import type { HandlerStart, Measurements } from './measurements.js';
import type { HandlerInfo, PhaseBreakdown, PhaseRow, VmStartResult } from './results.js';
import { windowOf } from './start-stages.js';
import { recordsOfStart, type StageRecord } from './stages.js';
import { summarize } from './stats.js';

/** The phases of each start (its end-to-end ms and its stage records), summarised over the starts. */
export function phaseBreakdown(
  starts: readonly { ms: number; records: readonly StageRecord[] }[],
  phases: readonly StartPhase[],
): PhaseBreakdown | undefined {
  if (starts.length === 0) return undefined;
  const totalMs = starts.reduce((sum, s) => sum + s.ms, 0);
  const timeOf = (records: readonly StageRecord[], stages: readonly string[]) =>
    records.filter((r) => stages.includes(r.stage)).reduce((sum, r) => sum + r.ms, 0);
  const perStart = starts.map((start) => phases.map((p) => timeOf(start.records, p.stages) - timeOf(start.records, p.minus ?? [])));
  const rows = phases.map((phase, i): PhaseRow => {
    const ms = perStart.map((times) => times[i] as number);
    const summary = summarize(ms);
    return {
      phase: phase.phase,
      stages: [...phase.stages],
      minus: [...(phase.minus ?? [])],
      p50: summary.p50,
      p90: summary.p90,
      share: ms.reduce((sum, v) => sum + v, 0) / totalMs,
      recorded: starts.some((start) => start.records.some((r) => phase.stages.includes(r.stage))),
    };
  });
  const restMs = starts.map((start, i) => start.ms - (perStart[i] as number[]).reduce((sum, v) => sum + v, 0));
  const rest = summarize(restMs);
  return {
    starts: starts.length,
    e2e: summarize(starts.map((s) => s.ms)),
    phases: rows,
    rest: { p50: rest.p50, p90: rest.p90, share: restMs.reduce((sum, v) => sum + v, 0) / totalMs },
  };
}

/**
 * How many records of `kind` with message `msg` kuasard's log (JSON lines) holds for each value of
 * their `field`: the accelerator each VM came up with.
 */
export function countFieldValues(logText: string, record: { kind: string; msg: string; field: string }): Record<string, number> {
  const counts: Record<string, number> = {};
  const quotedMsg = JSON.stringify(record.msg);
  for (const line of logText.split('\n')) {
    if (!line.includes(quotedMsg)) continue;
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const value = entry[record.field];
    if (entry['msg'] !== record.msg || entry['kind'] !== record.kind || typeof value !== 'string') continue;
    counts[value] = (counts[value] ?? 0) + 1;
  }
  return counts;
}

/** The phase breakdown of each measured handler whose kind's pods are VMs, and the accelerator its VMs ran with. */
export function vmStartsByHandler(
  handlers: readonly HandlerInfo[],
  data: Measurements,
  records: readonly StageRecord[],
  logText: string,
): Record<string, VmStartResult> {
  const results: Record<string, VmStartResult> = {};
  for (const h of handlers) {
    const bench = h.kind === undefined ? undefined : findKind(h.kind)?.bench;
    const vm = bench?.vmStart;
    if (h.kind === undefined || !vm) continue;
    // A warm start claims a VM that booted before: its own phases.
    const phases = h.pool === 'warm' && bench?.warmPool ? bench.warmPool.phases : vm.phases;
    const of = (starts: readonly HandlerStart[], includeUnnamed: boolean) =>
      phaseBreakdown(
        starts
          .filter((s) => s.handler === h.handler)
          .map(({ pod }) => ({ ms: pod.ms, records: recordsOfStart(records, windowOf(pod), { includeUnnamed }) })),
        phases,
      );
    // One pod at a time, kuasard does nothing else: records without a sandbox id are this pod's.
    const single = of(data.singleStarts, true);
    const parallel = of(data.parallelStarts, false);
    results[h.handler] = {
      accelerators: countFieldValues(logText, { kind: h.kind, msg: vm.readyRecord.msg, field: vm.readyRecord.accelField }),
      ...(single ? { single } : {}),
      ...(parallel ? { parallel } : {}),
    };
  }
  return results;
}
