// The warm pools of the measured kinds (KindBenchmark.warmPool), seen from outside kuasard: a
// pool member is idle while its directory below the kind's state directory exists (a pod that
// claims it takes its files and removes it), and ready once kuasard's log has its ready record.
// The benchmark waits for a full pool, none of it booting, before each one-at-a-time start (a
// refill boots in the background after each claim: it would load the CPU under the next start,
// warm or cold, kuasar's or the baseline's); it tells the pool's idle processes from the pods'
// (a claimed member keeps its name); and it checks afterwards, by kuasard's record of each VM
// that came up, that every start of a warm series was warm and every one of a cold series cold.
import { closeSync, openSync, readdirSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { findKind } from '../kinds/index.js';
import type { WarmPoolBenchmark } from '../kind-api/registration.js';
import { warmPoolsOf } from './kinds.js';
import type { Measurements } from './measurements.js';
import type { HandlerInfo, SingleResult } from './results.js';

/** How often the pool is looked at while waiting for it. */
const POLL_MS = 500;
/**
 * How long a pool may take to fill: its VMs boot one at a time at the least CPU weight (under
 * TCG, 15-30 s each when nothing else runs). A pool that stays short (its memory budget, the
 * host's memory pressure) ends the wait with an error that says how far it got.
 */
const FULL_TIMEOUT_MS = 10 * 60_000;

export interface PoolState {
  /** Idle members whose ready record is in the log. */
  ready: number;
  /** Idle members not ready yet. */
  booting: number;
}

/** The state of a pool whose idle members' ids are `members`, of which `readyIds` were logged ready. */
export function poolState(members: readonly string[], readyIds: ReadonlySet<string>): PoolState {
  const ready = members.filter((id) => readyIds.has(id)).length;
  return { ready, booting: members.length - ready };
}

/** The values of `field` in the records of `kind` with message `msg`, in kuasard's log (JSON lines). */
export function recordValues(logText: string, record: { kind: string; msg: string; field: string }): string[] {
  const quotedMsg = JSON.stringify(record.msg);
  return logText.split('\n').flatMap((line) => {
    if (!line.includes(quotedMsg)) return [];
    const entry = parseLine(line);
    const value = entry?.[record.field];
    return entry?.['msg'] === record.msg && entry['kind'] === record.kind && typeof value === 'string' ? [value] : [];
  });
}

function parseLine(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/** One kind's pool, watched through its directory and kuasard's log (read on from where it was last read). */
export class PoolWatch {
  private readonly readyIds = new Set<string>();
  private offset = 0;
  /** The end of the log read so far that is not a whole line yet. */
  private partial = '';

  constructor(
    readonly kind: string,
    readonly pool: WarmPoolBenchmark,
    private readonly kindDir: string,
    private readonly logPath: string,
  ) {}

  /** The ids of the idle members (booting or ready). */
  idleIds(): Set<string> {
    try {
      return new Set(readdirSync(join(this.kindDir, this.pool.idleDir)));
    } catch {
      return new Set();
    }
  }

  state(): PoolState {
    this.readLog();
    return poolState([...this.idleIds()], this.readyIds);
  }

  /** Until the pool has its size ready and nothing booting; throws after FULL_TIMEOUT_MS, or when `signal` aborts. */
  async untilFull(signal: AbortSignal): Promise<void> {
    const began = Date.now();
    for (;;) {
      const now = this.state();
      if (now.ready >= this.pool.size && now.booting === 0) return;
      if (Date.now() - began > FULL_TIMEOUT_MS)
        throw new Error(
          `the ${this.kind} kind's warm pool did not fill in ${FULL_TIMEOUT_MS / 1000} s: ${now.ready} of ${this.pool.size} ready, ${now.booting} booting`,
        );
      await sleep(POLL_MS, undefined, { signal });
    }
  }

  private readLog(): void {
    let fd: number;
    try {
      fd = openSync(this.logPath, 'r');
    } catch {
      return;
    }
    try {
      const chunk = Buffer.alloc(1 << 20);
      let text = this.partial;
      for (let n = readSync(fd, chunk, 0, chunk.length, this.offset); n > 0; n = readSync(fd, chunk, 0, chunk.length, this.offset)) {
        this.offset += n;
        text += chunk.subarray(0, n).toString('utf8');
      }
      const end = text.lastIndexOf('\n') + 1;
      this.partial = text.slice(end);
      const { msg, idField } = this.pool.readyRecord;
      for (const id of recordValues(text.slice(0, end), { kind: this.kind, msg, field: idField })) this.readyIds.add(id);
    } finally {
      closeSync(fd);
    }
  }
}

/** A watch of each pool of the measured handlers' kinds. */
export function watchPools(handlers: readonly HandlerInfo[], paths: { kuasarState: string; kuasardLog: string }): PoolWatch[] {
  return warmPoolsOf(handlers.map((h) => h.kind)).map(
    ({ kind, pool }) => new PoolWatch(kind, pool, join(paths.kuasarState, kind), paths.kuasardLog),
  );
}

/** How one start of a pool's series went, by kuasard's record of its VM: warm, cold, or no record. */
export function startKind(logText: string, kind: string, podId: string): 'warm' | 'cold' | undefined {
  const bench = findKind(kind)?.bench;
  const ready = bench?.vmStart?.readyRecord.msg;
  const claimed = bench?.warmPool?.claimedField;
  if (ready === undefined || claimed === undefined) return undefined;
  const quotedMsg = JSON.stringify(ready);
  const quotedId = JSON.stringify(podId);
  for (const line of logText.split('\n')) {
    if (!line.includes(quotedMsg) || !line.includes(quotedId)) continue;
    const entry = parseLine(line);
    if (entry?.['msg'] === ready && entry['kind'] === kind && entry['sandbox'] === podId)
      return typeof entry[claimed] === 'string' ? 'warm' : 'cold';
  }
  return undefined;
}

/**
 * Takes out of a pool's series the one-at-a-time starts that did not go as the series says (a
 * warm one that found the pool empty, or one whose VM kuasard did not log), each noted as a
 * failure of its series: a series holds only starts of its kind.
 */
export function keepStartsOfTheirSeries(data: Measurements, handlers: readonly HandlerInfo[], logText: string): void {
  for (const h of handlers) {
    const entry = data.single[h.handler];
    if (h.pool === undefined || h.kind === undefined || !entry) continue;
    const starts = data.singleStarts.filter((s) => s.handler === h.handler);
    const kept: SingleResult = { ...entry, ms: [], sandboxMs: [], failures: [...entry.failures] };
    starts.forEach((start, i) => {
      const went = startKind(logText, h.kind as string, start.pod.podId);
      if (went === h.pool) {
        kept.ms.push(entry.ms[i] as number);
        kept.sandboxMs.push(entry.sandboxMs[i] as number);
        return;
      }
      kept.failures.push(
        `pod ${start.pod.podId} started ${went ?? "without a record of its VM in kuasard's log"}, not ${h.pool}: left out of the series`,
      );
      data.singleStarts.splice(data.singleStarts.indexOf(start), 1);
    });
    data.single[h.handler] = kept;
  }
}
