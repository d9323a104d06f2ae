// One benchmark run: a private containerd + kuasard (the devenv the e2e tests use), kuasar's
// handlers and containerd's own runc handler measured side by side, then the report. The
// task-rate part has no baseline: it drives the Task API of the kind whose containers run inside
// kuasard directly (task-rate.ts; IN_KUASARD_KIND).
//
// This module only orchestrates: the environment's life, the interruption, and the result
// assembled from what the parts measured (parts.ts says in which order and why; handlers.ts which
// handlers in which order).
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { renderKuasardConfigWith } from '../devenv/config.js';
import { startEnvironment } from '../devenv/environment.js';
import { environmentNames } from '../devenv/layout.js';
import { chooseHandlers } from './handlers.js';
import { currentLoad, hostInfo } from './host-info.js';
import { handleInterrupts } from './interrupts.js';
import { kindConfigsInBench, warmPoolsOf } from './kinds.js';
import { emptyMeasurements, measuredSomething, summarizeMeasurements } from './measurements.js';
import { startWithGcHook } from './memory.js';
import { writeResults } from './output.js';
import { partContext } from './part-context.js';
import { measureParts } from './parts.js';
import type { BenchProgress } from './progress.js';
import { evaluateTargets, type BenchResult, type HandlerInfo } from './results.js';
import type { BenchSettings } from './settings.js';
import { parseStageRecords } from './stages.js';
import { breakdownsByHandler } from './start-stages.js';
import { vmStartsByHandler } from './vm-start.js';
import { keepStartsOfTheirSeries } from './warm-pool.js';

/**
 * How long one CRI call may take: a VM pod started with nine others under emulation on a busy
 * machine took up to 2 minutes, the client's (and kubelet's) default deadline (see also the vmm
 * kind's KindBenchmark.config).
 */
const CRI_CALL_TIMEOUT_MS = 5 * 60_000;

/** kuasard writes its log asynchronously: time for the last records to reach the file. */
const LOG_FLUSH_MS = 500;

export interface BenchOutcome {
  dir: string;
  result: BenchResult;
  /** Set when the environment could not be removed completely. */
  cleanupProblem?: string;
}

export async function runBench(settings: BenchSettings, progress: BenchProgress): Promise<BenchOutcome> {
  const startedAt = new Date().toISOString();
  const loadStart = currentLoad();
  const interrupt = new AbortController();
  const releaseSignals = handleInterrupts(interrupt, progress);
  const data = emptyMeasurements();
  let handlers: HandlerInfo[] = [];
  let incomplete: string | undefined;
  let cleanupProblem: string | undefined;
  let log = '';
  try {
    // Every kind "auto": one that cannot run here is left, and measured only if asked for (its pods then fail saying why).
    const env = await startWithGcHook(() =>
      startEnvironment({
        kuasardConfig: (paths) =>
          renderKuasardConfigWith(kindConfigsInBench(environmentNames(paths.dir).cgroupName, settings.kinds), 'auto')(paths),
        criCallTimeoutMs: CRI_CALL_TIMEOUT_MS,
        onProgress: (message) => progress.note(`  · ${message}`),
      }),
    );
    try {
      handlers = chooseHandlers(env.handlers, settings.kinds);
      progress.note(`  · handlers: ${handlers.map((h) => h.handler).join(', ')}`);
      await measureParts(partContext({ env, settings, progress, signal: interrupt.signal, handlers, data }));
    } catch (err) {
      // An interrupted sleep fails with a generic AbortError: name the interruption instead.
      incomplete = ((interrupt.signal.aborted ? interrupt.signal.reason : err) as Error).message;
      progress.fail(incomplete);
    } finally {
      await sleep(LOG_FLUSH_MS);
      log = readText(env.paths.kuasardLog);
      progress.note('  · removing the environment');
      await env.stop().catch((err: Error) => (cleanupProblem = err.message));
    }
  } finally {
    releaseSignals();
  }
  if (incomplete !== undefined && !measuredSomething(data)) throw new Error(incomplete);
  const records = parseStageRecords(
    log,
    warmPoolsOf(handlers.map((h) => h.kind)).map(({ pool }) => pool.readyRecord.idField),
  );
  keepStartsOfTheirSeries(data, handlers, log);
  summarizeMeasurements(data, records);
  const vmStarts = vmStartsByHandler(handlers, data, records, log);

  const withoutTargets: Omit<BenchResult, 'targets'> = {
    startedAt,
    finishedAt: new Date().toISOString(),
    complete: incomplete === undefined,
    ...(incomplete !== undefined ? { incomplete } : {}),
    host: hostInfo(loadStart),
    settings,
    handlers,
    single: data.single,
    parallel: data.parallel,
    stages: breakdownsByHandler(handlers, data, records),
    ...(Object.keys(vmStarts).length > 0 ? { vmStarts } : {}),
    memory: data.memory,
    ...(data.taskRate ? { taskRate: data.taskRate } : {}),
  };
  const result: BenchResult = { ...withoutTargets, targets: evaluateTargets(withoutTargets) };
  const dir = await writeResults(result, settings.outDir, (line) => progress.note(line));
  return { dir, result, ...(cleanupProblem !== undefined ? { cleanupProblem } : {}) };
}

/** The file's text, or nothing when it cannot be read (a run without kuasard's log still reports). */
function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
