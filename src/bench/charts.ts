// The report's charts: Vega-Lite specifications built from the results, rendered to SVG by
// Vega's headless renderer (no browser, no canvas: Vega's SVG string renderer needs neither).
import { parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { IN_KUASARD_KIND } from './kinds.js';
import { TASK_RATE_GOAL, type BenchResult } from './results.js';
import { OUTSIDE_KUASARD } from './stages.js';

export interface Chart {
  /** File name in the results directory. */
  file: string;
  title: string;
  spec: TopLevelSpec;
}

const WIDTH = 560;
const HEIGHT = 300;
/** Vega cuts labels at 180 px by default: stage names and series names are longer. */
const LABEL_LIMIT = 400;
const SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';
/** Every chart's config: full labels. */
const CONFIG = { axis: { labelLimit: LABEL_LIMIT }, legend: { labelLimit: LABEL_LIMIT } };

/** Every chart the results have data for. */
export function benchCharts(result: BenchResult): Chart[] {
  const charts: Chart[] = [];
  const single = Object.entries(result.single).filter(([, s]) => s.ms.length > 0);
  if (single.length > 0) {
    charts.push({
      file: 'latency-single.svg',
      title: 'Pod start, one at a time: cumulative distribution',
      spec: cumulativeChart(
        'Pod start, one at a time (RunPodSandbox to container RUNNING)',
        single.map(([handler, s]) => ({ handler, values: s.ms })),
      ),
    });
  }
  const parallel = Object.entries(result.parallel).filter(([, p]) => p.rounds.length > 0);
  if (parallel.length > 0) {
    charts.push({
      file: 'latency-parallel.svg',
      title: 'Pods started in parallel: cumulative distribution of single pods',
      spec: cumulativeChart(
        `Pod start inside batches of ${batchSizes(result)} started at once`,
        parallel.map(([handler, p]) => ({ handler, values: p.rounds.flatMap((r) => r.podMs) })),
      ),
    });
    charts.push({
      file: 'parallel-wall.svg',
      title: 'Parallel batches: wall time of each round',
      spec: wallTimeChart(result),
    });
  }
  const stages = Object.entries(result.stages).filter(([, s]) => s.single !== undefined);
  if (stages.length > 0) {
    charts.push({ file: 'stages.svg', title: 'Where the time of a pod start goes (p50 per stage)', spec: stagesChart(result) });
  }
  if (Object.values(result.memory).some((m) => m.points.length > 0)) {
    charts.push({ file: 'memory.svg', title: 'Management-plane memory against running pods', spec: memoryChart(result) });
  }
  const rates = taskRates(result);
  if (rates.length > 0) {
    charts.push({
      file: 'task-rate.svg',
      title: `${IN_KUASARD_KIND.name} containers per second through the Task API`,
      spec: taskRateChart(rates),
    });
  }
  return charts;
}

/** `50 pods`, or where handlers' batches differ (a kind's run limits) `50 pods (kuasar-vmm 10)`. */
export function batchSizes(result: BenchResult): string {
  const sizes = Object.entries(result.parallel).map(([handler, p]) => ({ handler, pods: p.pods }));
  const usual = result.settings.parallelPods;
  const others = sizes.filter((s) => s.pods !== usual).map((s) => `${s.handler} ${s.pods}`);
  return `${usual} pods${others.length > 0 ? ` (${others.join(', ')})` : ''}`;
}

/** Each sample's cumulative fraction within its handler, for a step-line distribution chart. */
export function cumulativePoints(series: readonly { handler: string; values: readonly number[] }[]) {
  return series.flatMap(({ handler, values }) => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted.map((ms, i) => ({ handler, ms, fraction: (i + 1) / sorted.length }));
  });
}

/** Latencies this many times apart (a VM's seconds beside a container's milliseconds) go on a logarithmic axis. */
const LOG_SCALE_SPREAD = 20;

function cumulativeChart(title: string, series: readonly { handler: string; values: readonly number[] }[]): TopLevelSpec {
  const all = series.flatMap((s) => s.values).filter((v) => v > 0);
  const logScale = all.length > 0 && Math.max(...all) / Math.min(...all) > LOG_SCALE_SPREAD;
  return {
    $schema: SCHEMA,
    config: CONFIG,
    title,
    width: WIDTH,
    height: HEIGHT,
    data: { values: cumulativePoints(series) },
    mark: { type: 'line', interpolate: 'step-after', point: { size: 12 } },
    encoding: {
      x: {
        field: 'ms',
        type: 'quantitative',
        title: `start latency (ms${logScale ? ', logarithmic' : ''})`,
        scale: logScale ? { type: 'log' } : { zero: false },
      },
      y: { field: 'fraction', type: 'quantitative', title: 'fraction of pods started', axis: { format: '%' } },
      color: { field: 'handler', type: 'nominal', title: 'CRI handler' },
    },
  };
}

function wallTimeChart(result: BenchResult): TopLevelSpec {
  const values = Object.entries(result.parallel).flatMap(([handler, p]) =>
    p.rounds.map((r, round) => ({ handler, round: round + 1, wallMs: r.wallMs })),
  );
  return {
    $schema: SCHEMA,
    config: CONFIG,
    title: `Wall time of a batch of ${batchSizes(result)} started at once`,
    width: WIDTH,
    height: HEIGHT / 2,
    data: { values },
    layer: [
      {
        mark: { type: 'point', filled: true, size: 60 },
        encoding: {
          x: { field: 'wallMs', type: 'quantitative', title: 'wall time (ms)', scale: { zero: true } },
          y: { field: 'handler', type: 'nominal', title: 'CRI handler' },
          color: { field: 'handler', type: 'nominal', legend: null },
          tooltip: [{ field: 'round' }, { field: 'wallMs' }],
        },
      },
      {
        mark: { type: 'tick', thickness: 2, size: 24, color: 'black' },
        encoding: {
          x: { aggregate: 'median', field: 'wallMs', type: 'quantitative' },
          y: { field: 'handler', type: 'nominal' },
        },
      },
    ],
  };
}

function stagesChart(result: BenchResult): TopLevelSpec {
  const values = Object.entries(result.stages).flatMap(([handler, s]) => {
    const b = s.single;
    if (!b) return [];
    const rows = [
      ...b.rows.map((r) => ({ stage: r.rpc ? r.stage : `· ${r.stage} (in ${r.inside ?? r.within ?? 'an RPC'})`, p50: r.p50 })),
      ...(b.outside ? [{ stage: OUTSIDE_KUASARD, p50: b.outside.p50 }] : []),
    ];
    return rows.map((row, order) => ({ handler, ...row, order }));
  });
  return {
    $schema: SCHEMA,
    config: CONFIG,
    title: 'Where the time of one pod start goes (p50 per stage, ms)',
    width: WIDTH,
    data: { values },
    mark: 'bar',
    encoding: {
      y: { field: 'stage', type: 'nominal', sort: { field: 'order', op: 'min' }, title: null },
      x: { field: 'p50', type: 'quantitative', title: 'p50 (ms); stages inside an RPC are part of its bar' },
      color: { field: 'handler', type: 'nominal', title: 'CRI handler' },
      yOffset: { field: 'handler' },
    },
  };
}

/** The task-rate runs that have a rate. */
function taskRates(result: BenchResult): { run: string; perSecond: number }[] {
  const runs = [
    { run: 'long-running (Create + Start)', figure: result.taskRate?.longRunning?.perSecond },
    { run: 'short-lived (Create … Delete)', figure: result.taskRate?.shortLived?.perSecond },
  ];
  return runs.flatMap(({ run, figure }) => (figure === undefined ? [] : [{ run, perSecond: figure }]));
}

function taskRateChart(rates: readonly { run: string; perSecond: number }[]): TopLevelSpec {
  return {
    $schema: SCHEMA,
    config: CONFIG,
    title: `${IN_KUASARD_KIND.name} containers per second through the Task API (line: ${TASK_RATE_GOAL}/s, runwasi's wasmtime shim)`,
    width: WIDTH,
    height: HEIGHT / 2,
    layer: [
      {
        data: { values: rates },
        mark: 'bar',
        encoding: {
          y: { field: 'run', type: 'nominal', title: null },
          x: { field: 'perSecond', type: 'quantitative', title: 'containers per second' },
        },
      },
      {
        data: { values: [{ goal: TASK_RATE_GOAL }] },
        mark: { type: 'rule', color: 'firebrick', strokeDash: [4, 4], strokeWidth: 2 },
        encoding: { x: { field: 'goal', type: 'quantitative' } },
      },
    ],
  };
}

function memoryChart(result: BenchResult): TopLevelSpec {
  const values = result.handlers.flatMap((h) =>
    (result.memory[h.handler]?.points ?? []).flatMap((p) => [
      {
        series: h.side === 'baseline' ? `${h.handler}: sum of the shims' PSS` : `${h.handler}: kuasard PSS`,
        pods: p.pods,
        mib: p.pssKb / 1024,
      },
      ...(p.afterGc ? [{ series: `${h.handler}: kuasard private memory after GC`, pods: p.pods, mib: p.afterGc.privateKb / 1024 }] : []),
      ...(p.podProcesses
        ? [{ series: `${h.handler}: PSS of the pods' own processes`, pods: p.pods, mib: p.podProcesses.pssKb / 1024 }]
        : []),
    ]),
  );
  return {
    $schema: SCHEMA,
    config: CONFIG,
    title: 'Management-plane memory against running pods (dashed: least-squares fit)',
    width: WIDTH,
    height: HEIGHT,
    data: { values },
    encoding: {
      x: { field: 'pods', type: 'quantitative', title: 'running pods', axis: { format: 'd' } },
      y: { field: 'mib', type: 'quantitative', title: 'MiB' },
      color: { field: 'series', type: 'nominal', title: null },
    },
    layer: [
      { mark: { type: 'line', point: true } },
      {
        transform: [{ regression: 'mib', on: 'pods', groupby: ['series'] }],
        mark: { type: 'line', strokeDash: [4, 4], opacity: 0.6 },
      },
    ],
  };
}

/** One chart as an SVG document. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
