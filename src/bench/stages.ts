// Where the time of a pod start goes. kuasard, at debug level, logs one `stage` record per RPC
// it serves (`controller.create`, `task.start`…, with an `rpc` field) and per step a kind takes
// inside an RPC (`runc.mount-rootfs`, `oci.create`…). This module picks out the records of each
// measured pod start and sums them into a per-stage breakdown; what no kuasard stage covers is
// containerd's own CRI work plus the transport between the two.
import { summarize, type Summary } from './stats.js';

export interface StageRecord {
  stage: string;
  ms: number;
  /** When the stage ended (the record's `time`), in epoch milliseconds. */
  at: number;
  sandbox?: string;
  container?: string;
  /** Set on the records of whole RPCs. */
  rpc?: string;
}

/**
 * The stage records of a kuasard log (JSON lines); other lines and malformed ones are skipped, and
 * so are records of no sandbox that carry one of `poolFields`: a warm pool member's boot (its id
 * is such a field), which belongs to no pod's start, though one pod at a time the records of no
 * sandbox are otherwise taken as the start's.
 */
export function parseStageRecords(text: string, poolFields: readonly string[] = []): StageRecord[] {
  const records: StageRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes('"stage"')) continue;
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const { stage, ms, time } = entry;
    if (entry['msg'] !== 'stage' || typeof stage !== 'string' || typeof ms !== 'number' || typeof time !== 'string') continue;
    if (entry['sandbox'] === undefined && poolFields.some((field) => typeof entry[field] === 'string')) continue;
    const at = Date.parse(time);
    if (Number.isNaN(at)) continue;
    const record: StageRecord = { stage, ms, at };
    for (const key of ['sandbox', 'container', 'rpc'] as const) {
      const value = entry[key];
      if (typeof value === 'string') record[key] = value;
    }
    records.push(record);
  }
  return records;
}

/** One measured pod start: its sandbox and the wall-clock window (epoch ms) it took. */
export interface StartWindow {
  sandbox: string;
  startedAt: number;
  endedAt: number;
}

export interface AttributionOptions {
  /**
   * Also take records that name no sandbox (stages of a kind outside a sandbox's RPC). Only right
   * when this start was the only thing happening in its window: a one-pod-at-a-time round.
   */
  includeUnnamed: boolean;
}

/**
 * The records of one pod start, in log order: those that ended inside its window and name its
 * sandbox (or none, see AttributionOptions). Records carry whole milliseconds and so does the
 * window, so a stage that ended in the window's first or last millisecond is still in. A
 * long-lived call begun during the start (task.wait) ends long after it and stays out.
 */
export function recordsOfStart(records: readonly StageRecord[], start: StartWindow, options: AttributionOptions): StageRecord[] {
  const from = Math.floor(start.startedAt);
  const to = Math.floor(start.endedAt);
  return records.filter(
    (r) => r.at >= from && r.at <= to && (r.sandbox === start.sandbox || (options.includeUnnamed && r.sandbox === undefined)),
  );
}

export interface StageRow {
  stage: string;
  /** A whole RPC served by kuasard; the other stages ran inside one (see `within`). */
  rpc: boolean;
  /**
   * For a stage inside an RPC: the RPC it ran in. A step that runs in several RPCs (an OCI
   * runtime command for the pod's sandbox and for its container) has a row for each.
   */
  within?: string;
  /** For a step inside another step of the same RPC (an OCI command a kind's step runs): that step, as most often seen. */
  inside?: string;
  /** Records per pod start, on average (containerd asks controller.status several times). */
  perStart: number;
  /** Percentiles of the per-start total of this stage (0 where a start had none). */
  p50: number;
  p90: number;
  /** This stage's total over all starts divided by their total end-to-end time. */
  share: number;
}

export interface StageBreakdown {
  starts: number;
  e2e: Summary;
  /** RPC stages in the order they first ran, each followed by the steps that ran inside it, each step by the steps inside it. */
  rows: StageRow[];
  /**
   * End-to-end time outside every kuasard RPC: containerd's own work and the transport. Only
   * when the records hold every RPC of each start (see BreakdownOptions).
   */
  outside?: { p50: number; p90: number; share: number };
  /** The stage with the most time of its own (its time minus the stages right inside it), or `outside`. */
  dominant?: { stage: string; share: number };
}

export interface BreakdownOptions {
  /** The records hold every RPC of each start (not so when records naming no sandbox were left out). */
  everyRpc: boolean;
}

export const OUTSIDE_KUASARD = 'outside kuasard (containerd + transport)';

/** A row's identity: an RPC by its name, a step by its name and the RPC it ran in. */
function rowKey(stage: string, within: string | undefined): string {
  return `${stage}\u0000${within ?? ''}`;
}

/** Sums the records of each start (`ms`: its end-to-end time) into a per-stage breakdown. */
export function stageBreakdown(
  starts: readonly { ms: number; records: readonly StageRecord[] }[],
  options: BreakdownOptions,
): StageBreakdown | undefined {
  if (starts.length === 0) return undefined;
  const totalMs = starts.reduce((sum, s) => sum + s.ms, 0);
  const rowsByKey = new Map<string, { stage: string; rpc: boolean; within?: string }>();
  const insideVotes = new Map<string, Map<string, number>>();
  const perStartTotals = starts.map((start) => {
    const totals = new Map<string, { ms: number; count: number }>();
    start.records.forEach((record, index) => {
      const within = record.rpc === undefined ? enclosing(record, index, start.records, 'rpc')?.stage : undefined;
      const key = rowKey(record.stage, within);
      if (!rowsByKey.has(key))
        rowsByKey.set(key, { stage: record.stage, rpc: record.rpc !== undefined, ...(within !== undefined ? { within } : {}) });
      const total = totals.get(key) ?? { ms: 0, count: 0 };
      total.ms += record.ms;
      total.count += 1;
      totals.set(key, total);
      if (record.rpc === undefined) {
        const step = enclosing(record, index, start.records, 'step');
        if (step && enclosing(step, start.records.indexOf(step), start.records, 'rpc')?.stage === within)
          vote(insideVotes, key, step.stage);
      }
    });
    return totals;
  });

  const rows = [...rowsByKey].map(([key, row]): StageRow => {
    const perStart = perStartTotals.map((totals) => totals.get(key) ?? { ms: 0, count: 0 });
    const summary = summarize(perStart.map((t) => t.ms));
    const inside = winner(insideVotes.get(key));
    return {
      ...row,
      ...(inside !== undefined ? { inside } : {}),
      perStart: perStart.reduce((sum, t) => sum + t.count, 0) / starts.length,
      p50: summary.p50,
      p90: summary.p90,
      share: perStart.reduce((sum, t) => sum + t.ms, 0) / totalMs,
    };
  });

  const breakdown = { starts: starts.length, e2e: summarize(starts.map((s) => s.ms)), rows: nestRows(rows) };
  if (!options.everyRpc) {
    const dominant = dominantStage(rows, undefined);
    return { ...breakdown, ...(dominant ? { dominant } : {}) };
  }
  const outsideMs = starts.map((start, i) => {
    const inRpcs = rows
      .filter((row) => row.rpc)
      .reduce((sum, row) => sum + (perStartTotals[i]?.get(rowKey(row.stage, undefined))?.ms ?? 0), 0);
    return Math.max(0, start.ms - inRpcs);
  });
  const summary = summarize(outsideMs);
  const outside = { p50: summary.p50, p90: summary.p90, share: outsideMs.reduce((sum, ms) => sum + ms, 0) / totalMs };
  const dominant = dominantStage(rows, outside.share);
  return { ...breakdown, outside, ...(dominant ? { dominant } : {}) };
}

/**
 * The RPC, or the step, that a step ran in: the shortest such record of the same start that was
 * logged after it (an enclosing stage ends, and logs, after what it encloses), began before it
 * and ended after it. Records carry their end in whole milliseconds, so begins are known to
 * within one: an RPC is given that millisecond; a step is not, since steps of one RPC often run
 * back to back, and a step that began in the millisecond the other ended is the next one.
 */
function enclosing(inner: StageRecord, index: number, records: readonly StageRecord[], what: 'rpc' | 'step'): StageRecord | undefined {
  const innerBegin = inner.at - inner.ms;
  let best: StageRecord | undefined;
  records.forEach((r, i) => {
    if (i <= index || (r.rpc !== undefined) !== (what === 'rpc')) return;
    const beganBefore = what === 'rpc' ? r.at - r.ms <= innerBegin + 1 : r.at - r.ms < innerBegin;
    if (!beganBefore || r.at < inner.at || r.ms < inner.ms) return;
    if (!best || r.ms < best.ms) best = r;
  });
  return best;
}

function vote(votes: Map<string, Map<string, number>>, key: string, candidate: string): void {
  const tally = votes.get(key) ?? new Map<string, number>();
  tally.set(candidate, (tally.get(candidate) ?? 0) + 1);
  votes.set(key, tally);
}

function winner(tally: Map<string, number> | undefined): string | undefined {
  let best: string | undefined;
  let bestCount = 0;
  for (const [candidate, count] of tally ?? []) {
    if (count > bestCount) [best, bestCount] = [candidate, count];
  }
  return best;
}

/** The rows right inside `parent`: the steps of an RPC that no other step holds, or the steps inside a step of the same RPC. */
function childrenOf(parent: StageRow, rows: readonly StageRow[]): StageRow[] {
  return parent.rpc
    ? rows.filter((r) => !r.rpc && r.within === parent.stage && r.inside === undefined)
    : rows.filter((r) => !r.rpc && r.within === parent.within && r.inside === parent.stage);
}

/** RPC rows in their order, each followed by its steps depth first; steps of no known RPC last. */
function nestRows(rows: StageRow[]): StageRow[] {
  const nested: StageRow[] = [];
  const place = (row: StageRow) => {
    if (nested.includes(row)) return;
    nested.push(row);
    for (const child of childrenOf(row, rows)) place(child);
  };
  for (const row of rows.filter((r) => r.rpc)) place(row);
  return [...nested, ...rows.filter((r) => !nested.includes(r))];
}

function dominantStage(rows: readonly StageRow[], outsideShare: number | undefined): { stage: string; share: number } | undefined {
  let dominant = outsideShare === undefined ? undefined : { stage: OUTSIDE_KUASARD, share: outsideShare };
  for (const row of rows) {
    const own = row.share - childrenOf(row, rows).reduce((sum, r) => sum + r.share, 0);
    if (!dominant || own > dominant.share) dominant = { stage: stageName(row), share: own };
  }
  return dominant;
}

/** A row's name where one stage has rows in several RPCs: `oci.start in task.start`. */
export function stageName(row: StageRow): string {
  return row.within === undefined ? row.stage : `${row.stage} in ${row.within}`;
}

/** One stage's records inside a window in which many containers of one pod were driven at once. */
export interface StageTotal {
  stage: string;
  /** A whole RPC served by kuasard (else a step inside one). */
  rpc: boolean;
  /** Records per container. */
  perContainer: number;
  meanMs: number;
  p90Ms: number;
  /** The stage's total time over the containers: kuasard's time in it per container (calls overlap, so these add up to more than the wall time). */
  msPerContainer: number;
}

/**
 * The stage records that name `window`'s sandbox and ended inside it, summed per stage, in the
 * order each stage first appears. Task RPC records name no container, so containers driven at
 * once cannot be told apart: the figures are per container on average.
 */
export function stageTotals(records: readonly StageRecord[], window: StartWindow, containers: number): StageTotal[] {
  const byStage = new Map<string, StageRecord[]>();
  for (const record of recordsOfStart(records, window, { includeUnnamed: false })) {
    const list = byStage.get(record.stage) ?? [];
    list.push(record);
    byStage.set(record.stage, list);
  }
  return [...byStage].map(([stage, list]) => {
    const summary = summarize(list.map((r) => r.ms));
    return {
      stage,
      rpc: list.some((r) => r.rpc !== undefined),
      perContainer: list.length / containers,
      meanMs: summary.mean,
      p90Ms: summary.p90,
      msPerContainer: (summary.mean * list.length) / containers,
    };
  });
}
