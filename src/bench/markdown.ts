// The Markdown summary of a benchmark run (summary.md): targets first, then each measurement
// with kuasar and the baseline side by side and their ratio.
import { findKind } from '../kinds/index.js';
import { BASELINE_KIND, IN_KUASARD_KIND, podProcessesOf } from './kinds.js';
import {
  runtimeHandlerOf,
  TASK_RATE_GOAL,
  type BenchResult,
  type HandlerInfo,
  type MemoryResult,
  type PhaseBreakdown,
  type PodMemoryCost,
  type TaskRateResult,
  type TaskRateRun,
  type VmStartResult,
} from './results.js';
import { OUTSIDE_KUASARD, type StageBreakdown, type StageRow, type StageTotal } from './stages.js';
import type { HandlerCounts } from './settings.js';
import { summarize } from './stats.js';

export interface ChartFile {
  file: string;
  title: string;
}

const ms = (n: number) => n.toFixed(1);
const mib = (kb: number) => (kb / 1024).toFixed(1);
const pct = (share: number) => `${(share * 100).toFixed(1)}%`;
const ratio = (baseline: number, kuasar: number) => `${(baseline / kuasar).toFixed(2)}x`;

export function renderMarkdown(result: BenchResult, charts: readonly ChartFile[]): string {
  const out: string[] = [];
  const { settings, host } = result;
  out.push(`# kuasar benchmark, ${result.startedAt}`, '');
  if (!result.complete) out.push(`**Incomplete run**: ${result.incomplete ?? 'stopped early'}. What was measured before is below.`, '');
  out.push(
    `Machine: ${host.cpus} CPUs, ${host.memoryGiB.toFixed(0)} GiB, Linux ${host.kernel}, Node.js ${host.node}, ${host.containerd}, ${host.runc}. ` +
      `Load average (1 min) ${host.loadStart.toFixed(2)} at the start, ${host.loadEnd.toFixed(2)} at the end: ` +
      'anything else running on the machine adds noise to both sides alike, since their runs are interleaved.',
    '',
    `Handlers: ${result.handlers.map(describeHandler).join('; ')}. ` +
      `Pods on the ${settings.hostNetwork ? 'host network' : 'CNI bridge network'}, one long-running container each: ${describeIdleWorkloads(result.handlers)}.` +
      (settings.quick ? ' **Quick mode**: too few samples for conclusions.' : ''),
    '',
  );

  out.push('## Targets', '', '| target | goal | measured | status |', '|---|---|---|---|');
  for (const t of result.targets) {
    out.push(`| ${t.title} | ${t.goal} | ${t.measured} | **${t.status}**${t.note ? `: ${t.note}` : ''} |`);
  }
  out.push('');

  const baseline = result.handlers.find((h) => h.side === 'baseline');
  const kuasarHandlers = result.handlers.filter((h) => h.side === 'kuasar');

  if (Object.keys(result.single).length > 0) {
    out.push(
      `## Pod start, one at a time (${settings.singleRounds} rounds per handler${countsNote(result, result.single, (c) => String(c.singleRounds))})`,
      '',
    );
    out.push('RunPodSandbox + CreateContainer + StartContainer until CRI reports the container RUNNING, in ms.', '');
    out.push('| handler | n | min | p50 | p90 | p99 | max | failures |', '|---|---|---|---|---|---|---|---|');
    for (const h of result.handlers) {
      const single = result.single[h.handler];
      if (!single) continue;
      const s = single.summary;
      out.push(
        s
          ? `| ${h.handler} | ${s.n} | ${ms(s.min)} | ${ms(s.p50)} | ${ms(s.p90)} | ${ms(s.p99)} | ${ms(s.max)} | ${single.failures.length} |`
          : `| ${h.handler} | 0 | - | - | - | - | - | ${single.failures.length} |`,
      );
    }
    const base = baseline && result.single[baseline.handler]?.summary;
    for (const k of kuasarHandlers) {
      const s = result.single[k.handler]?.summary;
      if (s && base) out.push('', `Baseline / ${k.handler}: p50 ${ratio(base.p50, s.p50)}, p90 ${ratio(base.p90, s.p90)}.`);
    }
    out.push('', ...renderSandboxSplit(result), '');
    for (const warm of result.handlers.filter((h) => h.pool === 'warm')) out.push(...renderWarmAndCold(result, warm));
  }

  if (Object.keys(result.parallel).length > 0) {
    out.push(
      `## ${settings.parallelPods} pods in parallel (${settings.parallelRounds} rounds per handler${countsNote(result, result.parallel, (c) => `${c.parallelPods} pods, ${c.parallelRounds} rounds`)})`,
      '',
    );
    out.push(
      'Wall time from the first RunPodSandbox to the last container RUNNING, in ms; and the start time of single pods inside the batches.',
      '',
    );
    out.push(
      '| handler | pods | rounds | wall min | wall p50 | wall max | pod p50 | pod p90 | failures |',
      '|---|---|---|---|---|---|---|---|---|',
    );
    for (const h of result.handlers) {
      const parallel = result.parallel[h.handler];
      if (!parallel) continue;
      const w = parallel.wall;
      const podMs = parallel.rounds.flatMap((r) => r.podMs);
      const pod = podMs.length > 0 ? summarize(podMs) : undefined;
      out.push(
        w && pod
          ? `| ${h.handler} | ${parallel.pods} | ${w.n} | ${ms(w.min)} | ${ms(w.p50)} | ${ms(w.max)} | ${ms(pod.p50)} | ${ms(pod.p90)} | ${parallel.failures.length} |`
          : `| ${h.handler} | ${parallel.pods} | 0 | - | - | - | - | - | ${parallel.failures.length} |`,
      );
    }
    const base = baseline && result.parallel[baseline.handler];
    for (const k of kuasarHandlers) {
      const own = result.parallel[k.handler];
      // Batches of different sizes have no ratio.
      if (own?.wall && base?.wall && own.pods === base.pods)
        out.push('', `Baseline / ${k.handler}: wall time (median) ${ratio(base.wall.p50, own.wall.p50)}.`);
    }
    out.push('');
  }

  for (const [handler, vm] of Object.entries(result.vmStarts ?? {})) out.push(...renderVmStart(result, handler, vm));

  for (const k of kuasarHandlers) {
    const stages = result.stages[k.handler];
    if (stages?.single) out.push(...renderBreakdown(`Where the time goes: ${k.handler}, one pod at a time`, stages.single));
    if (stages?.parallel) out.push(...renderBreakdown(`Where the time goes: ${k.handler}, inside the parallel batches`, stages.parallel));
  }

  if (Object.keys(result.memory).length > 0) out.push(...renderMemory(result));

  if (result.taskRate) out.push(...renderTaskRate(result.taskRate));

  for (const list of [result.single, result.parallel, result.memory]) {
    for (const [handler, entry] of Object.entries(list)) {
      if (entry.failures.length > 0) out.push(`Failures of ${handler}: ${firstFew(entry.failures)}`, '');
    }
  }

  if (charts.length > 0) {
    out.push('## Charts', '');
    for (const chart of charts) out.push(`![${chart.title}](${chart.file})`, '');
  }
  out.push('How these figures are taken: bench/README.md. Raw figures: results.json.', '');
  return out.join('\n');
}

/** `; kuasar-vmm: 20` for each handler of the part (`table`) whose kind caps the run's counts (settings.kindCounts). */
function countsNote(result: BenchResult, table: Readonly<Record<string, unknown>>, show: (counts: HandlerCounts) => string): string {
  return result.handlers
    .filter((h) => table[h.handler] !== undefined)
    .flatMap((h) => {
      const own = h.kind === undefined ? undefined : result.settings.kindCounts[h.kind];
      return own ? [`; ${h.handler}: ${show(own)}`] : [];
    })
    .join('');
}

/** Why a measured kind runs fewer pods than the others. */
function limitsWhy(result: BenchResult): string[] {
  // Once per kind: a kind with a warm pool has two series.
  const firstOfKind = result.handlers.filter((h, i) => result.handlers.findIndex((other) => other.kind === h.kind) === i);
  return firstOfKind.flatMap((h) => {
    const own = h.kind === undefined ? undefined : result.settings.kindCounts[h.kind];
    const series = result.handlers.filter((other) => other.kind === h.kind).map((other) => other.handler);
    return own ? [`Fewer for ${series.join(' and ')} (its kind's limits on a run's default counts): ${own.why}.`, ''] : [];
  });
}

/** Each handler's RunPodSandbox, and the rest of its start (the container's create and start until RUNNING). */
function renderSandboxSplit(result: BenchResult): string[] {
  const out = [
    ...limitsWhy(result),
    'Of which RunPodSandbox (sent to its reply: the pod sandbox ready), and the rest: the container created and started until CRI reports it RUNNING, in ms.',
    '',
    '| handler | RunPodSandbox p50 | RunPodSandbox p90 | container p50 | container p90 |',
    '|---|---|---|---|---|',
  ];
  for (const h of result.handlers) {
    const single = result.single[h.handler];
    const sandbox = single?.sandboxSummary;
    if (!single || !sandbox) continue;
    const container = summarize(single.ms.map((total, i) => total - (single.sandboxMs[i] ?? 0)));
    out.push(`| ${h.handler} | ${ms(sandbox.p50)} | ${ms(sandbox.p90)} | ${ms(container.p50)} | ${ms(container.p90)} |`);
  }
  return out;
}

/**
 * A kind's warm and cold starts side by side (KindBenchmark.warmPool): how the two were made, their
 * p50s and ratios against each other and the BASELINE_KIND, and what the pool costs per idle member.
 */
function renderWarmAndCold(result: BenchResult, warm: HandlerInfo): string[] {
  const pool = warm.kind === undefined ? undefined : findKind(warm.kind)?.bench?.warmPool;
  const cold = result.handlers.find((h) => h.pool === 'cold' && h.kind === warm.kind);
  const reference = result.handlers.find((h) => h.side === 'kuasar' && h.kind === BASELINE_KIND.name);
  if (!pool || !cold) return [];
  const out = [
    `### ${warm.kind} pods, warm and cold, side by side`,
    '',
    `The benchmark's kuasard keeps a warm pool of ${pool.size} VMs for the ${warm.kind} kind. \`${warm.handler}\`: pods the pool serves ` +
      `(no resource limits); \`${cold.handler}\`: ${pool.coldPod.why}. Both run on the handler \`${runtimeHandlerOf(warm)}\` in the same rounds. ` +
      'Before each start of a round (any handler), the benchmark waits until the pool is full again with nothing booting ' +
      "(its idle VMs' directories, and their ready records in kuasard's log): a refill after a claim would load the CPU under the next start. " +
      "Each start is checked afterwards by kuasard's `VM ready` record of its pod (a warm VM named, or not); one that went otherwise is left out of its series and listed as its failure.",
    '',
    '| series | n | end to end p50 | p90 | RunPodSandbox p50 | p90 | container p50 |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const h of [warm, cold, ...(reference ? [reference] : [])]) {
    const single = result.single[h.handler];
    const e2e = single?.summary;
    const sandbox = single?.sandboxSummary;
    if (!single || !e2e || !sandbox) continue;
    const container = summarize(single.ms.map((total, i) => total - (single.sandboxMs[i] ?? 0)));
    out.push(
      `| ${h.handler} | ${e2e.n} | ${ms(e2e.p50)} | ${ms(e2e.p90)} | ${ms(sandbox.p50)} | ${ms(sandbox.p90)} | ${ms(container.p50)} |`,
    );
  }
  const w = result.single[warm.handler];
  const c = result.single[cold.handler];
  const r = reference && result.single[reference.handler];
  const lines = [
    ...(w?.summary && c?.summary ? [`cold / warm, end to end p50: **${ratio(c.summary.p50, w.summary.p50)}**`] : []),
    ...(w?.sandboxSummary && c?.sandboxSummary ? [`RunPodSandbox p50 ${ratio(c.sandboxSummary.p50, w.sandboxSummary.p50)}`] : []),
    ...(reference && w?.sandboxSummary && r?.sandboxSummary
      ? [`warm / ${reference.handler}, RunPodSandbox p50: **${ratio(w.sandboxSummary.p50, r.sandboxSummary.p50)}**`]
      : []),
  ];
  if (lines.length > 0) out.push('', `${lines.join('; ')}.`);
  out.push('');
  return out;
}

/** A VM pod's start phase by phase (vm-start.ts), the accelerator, and the published figures beside it. */
function renderVmStart(result: BenchResult, handler: string, vm: VmStartResult): string[] {
  const kind = result.handlers.find((h) => h.handler === handler)?.kind;
  const registration = kind === undefined ? undefined : findKind(kind)?.bench?.vmStart;
  const out = [`## A VM pod's start, phase by phase: ${handler}`, '', describeAccelerators(vm.accelerators), ''];
  const table = (title: string, b: PhaseBreakdown) => {
    out.push(title, '', "| phase | from kuasard's stages | p50 ms | p90 ms | share |", '|---|---|---|---|---|');
    for (const row of b.phases) {
      const stages = row.stages.map((st) => `\`${st}\``).join(' + ') + row.minus.map((st) => ` − \`${st}\``).join('');
      out.push(
        `| ${row.phase}${row.recorded ? '' : ' (no record of it)'} | ${stages} | ${ms(row.p50)} | ${ms(row.p90)} | ${pct(row.share)} |`,
      );
    }
    out.push(
      `| the rest: containerd's CRI work (sandbox, CNI, image, stores), kuasard's other steps, the transport | end to end − the phases | ${ms(b.rest.p50)} | ${ms(b.rest.p90)} | ${pct(b.rest.share)} |`,
      `| **the pod's start, end to end** | | ${ms(b.e2e.p50)} | ${ms(b.e2e.p90)} | 100% |`,
      '',
    );
  };
  if (vm.single)
    table(`One pod at a time (${vm.single.starts} starts); percentiles of each phase apart, so they do not add up:`, vm.single);
  if (vm.parallel)
    table(
      `Inside the parallel batches (${vm.parallel.starts} pods, ${result.parallel[handler]?.pods ?? '?'} at once; from the records that name each pod's sandbox):`,
      vm.parallel,
    );
  if (registration) out.push(`For reference: ${registration.anchor}.`, '');
  return out;
}

/** The accelerator the VMs came up with, as kuasard logged it, and what TCG means for the figures. */
function describeAccelerators(accelerators: Readonly<Record<string, number>>): string {
  const found = Object.entries(accelerators);
  if (found.length === 0) return "Accelerator: not found in kuasard's log (no VM came up?).";
  const list = found.map(([accel, vms]) => `**${accel.toUpperCase()}** (${vms} VM${vms === 1 ? '' : 's'})`).join(', ');
  const tcg = accelerators['tcg'] !== undefined;
  return (
    `Accelerator, as kuasard logged each VM that came up in this run: ${list}.` +
    (tcg
      ? " TCG is QEMU's software emulation (KVM does not work on this host): the guest's code is translated as it runs, so every phase " +
        'that runs guest code (its kernel, the agent, runc in the guest) is many times slower than on KVM, and QEMU holds the translated code in memory.'
      : '')
  );
}

/** The baseline's idle workload (BASELINE_KIND's), and that of each measured kind that runs another. */
function describeIdleWorkloads(handlers: readonly HandlerInfo[]): string {
  const others = handlers.flatMap((h) => {
    const summary = h.kind === undefined ? undefined : findKind(h.kind)?.workloads.idle.summary;
    return summary === undefined || summary === BASELINE_KIND.idle.summary ? [] : [`, or for the ${h.kind} kind ${summary}`];
  });
  return BASELINE_KIND.idle.summary + others.join('');
}

function describeHandler(h: HandlerInfo): string {
  return h.side === 'baseline'
    ? `\`${h.handler}\` (containerd's runc handler: pause container, one shim per pod)`
    : `\`${h.handler}\` (kuasard, ${h.kind} kind)`;
}

function renderBreakdown(title: string, b: StageBreakdown): string[] {
  const out = [`## ${title}`, ''];
  out.push(
    b.outside
      ? `From kuasard's stage records of ${b.starts} pod starts (end-to-end p50 ${ms(b.e2e.p50)} ms). Share: the stage's total over the end-to-end total; stages inside an RPC are part of that RPC's share.`
      : `From the stage records that name a sandbox, of ${b.starts} pods started in parallel (end-to-end p50 ${ms(b.e2e.p50)} ms). The time outside kuasard cannot be split per pod here.`,
    '',
    '| stage | runs inside | per start | p50 ms | p90 ms | share |',
    '|---|---|---|---|---|---|',
  );
  for (const row of b.rows) {
    const indent = '&nbsp;&nbsp;'.repeat(depthOf(row, b.rows));
    const within = row.inside !== undefined ? `${row.inside} (${row.within})` : row.within;
    out.push(
      `| ${indent}\`${row.stage}\` | ${within ?? (row.rpc ? 'RPC' : 'an RPC not recorded here')} | ${row.perStart.toFixed(1)} | ${ms(row.p50)} | ${ms(row.p90)} | ${pct(row.share)} |`,
    );
  }
  if (b.outside) out.push(`| ${OUTSIDE_KUASARD} | | | ${ms(b.outside.p50)} | ${ms(b.outside.p90)} | ${pct(b.outside.share)} |`);
  if (b.dominant)
    out.push('', `Largest share of its own${b.outside ? '' : ' among these stages'}: **${b.dominant.stage}** (${pct(b.dominant.share)}).`);
  out.push('');
  return out;
}

/** How deep a row sits: an RPC 0, a step right inside one 1, a step inside that step 2, and so on. */
function depthOf(row: StageRow, rows: readonly StageRow[], seen: readonly StageRow[] = []): number {
  if (row.rpc) return 0;
  const parent = rows.find((r) => !r.rpc && r.stage === row.inside && r.within === row.within);
  return parent && !seen.includes(parent) ? 1 + depthOf(parent, rows, [...seen, row]) : 1;
}

function renderTaskRate(taskRate: TaskRateResult): string[] {
  const out = [`## ${IN_KUASARD_KIND.name} containers through the Task API`, ''];
  if (taskRate.skipped !== undefined) return [...out, `Skipped: ${taskRate.skipped}.`, ''];
  out.push(
    `kuasard's Task API on the socket of one \`${taskRate.handler}\` pod${taskRate.taskSocket ? ` (\`${taskRate.taskSocket}\`)` : ''}, ` +
      `driven directly as containerd's task service drives a shim, ${taskRate.concurrency} containers in flight at once; ` +
      'stdout and stderr are FIFOs the benchmark drains, stdin none. Rate: containers over the wall time from the first Create sent ' +
      `to the last reply. Target: above ${TASK_RATE_GOAL}/s, the figure published for containerd's runwasi wasmtime shim.`,
    '',
    `| run | containers | wall ms | per second | rate / ${TASK_RATE_GOAL} | container p50 ms | p90 ms | max ms | failures |`,
    '|---|---|---|---|---|---|---|---|---|',
  );
  const runs = [
    { name: 'long-running', what: `Create + Start (\`${IN_KUASARD_KIND.taskRate.longRunning.join(' ')}\`)`, run: taskRate.longRunning },
    {
      name: 'short-lived',
      what: `Create, Start, Wait, Delete (\`${IN_KUASARD_KIND.taskRate.shortLived.join(' ')}\`, exit 0)`,
      run: taskRate.shortLived,
    },
  ].filter((r): r is { name: string; what: string; run: TaskRateRun } => r.run !== undefined);
  for (const { name, what, run } of runs) {
    const s = run.summary;
    const rate = run.perSecond;
    out.push(
      `| ${name}: ${what} | ${run.containers} | ${orDash(run.wallMs, (v) => v.toFixed(0))} | ${orDash(rate, (v) => v.toFixed(1))} | ${orDash(rate, (v) => `${(v / TASK_RATE_GOAL).toFixed(2)}x`)} | ` +
        `${orDash(s, (v) => ms(v.p50))} | ${orDash(s, (v) => ms(v.p90))} | ${orDash(s, (v) => ms(v.max))} | ${run.failures.length} |`,
    );
  }
  out.push('');
  for (const { name, run } of runs) {
    if (run.stages && run.stages.length > 0) out.push(...renderStageTotals(`kuasard's stages, ${name} run`, run.stages));
  }
  for (const { name, run } of runs) {
    if (run.failures.length > 0) out.push(`Failures, ${name}: ${firstFew(run.failures)}`, '');
  }
  if (taskRate.failures.length > 0)
    out.push(`Failures setting up or removing the pod and its containers: ${firstFew(taskRate.failures)}`, '');
  return out;
}

function renderStageTotals(title: string, totals: readonly StageTotal[]): string[] {
  const out = [`### ${title}`, ''];
  out.push(
    'The stage records of the pod that ended inside the run. Task RPC records name no container, so these are averages over the containers; ' +
      'calls overlap, so the time per container adds up to more than the wall time.',
    '',
    '| stage | | calls per container | mean ms | p90 ms | ms per container |',
    '|---|---|---|---|---|---|',
  );
  // RPCs first, then the steps that ran inside them.
  for (const t of [...totals.filter((t) => t.rpc), ...totals.filter((t) => !t.rpc)]) {
    out.push(
      `| \`${t.stage}\` | ${t.rpc ? 'RPC' : 'step inside an RPC'} | ${t.perContainer.toFixed(2)} | ${ms(t.meanMs)} | ${ms(t.p90Ms)} | ${ms(t.msPerContainer)} |`,
    );
  }
  out.push('');
  return out;
}

function firstFew(failures: readonly string[]): string {
  return `${failures.slice(0, 5).join('; ')}${failures.length > 5 ? ` (and ${failures.length - 5} more)` : ''}`;
}

function renderMemory(result: BenchResult): string[] {
  const { settings } = result;
  const out = ['## Management-plane memory', ''];
  out.push(
    `kuasard (plus any helper process it keeps) against the sum over the baseline's containerd-shim-runc-v2 processes, in MiB, ` +
      `${settings.settleMs / 1000} s after the last pod started, median of ${settings.memoryReads} reads one second apart. ` +
      'Each side ran alone: its pods were all removed before the other side began. ' +
      'PSS counts a page shared by N processes 1/N for each: kuasard shares the node binary with every Node.js process on the machine, ' +
      'so its PSS moves as other Node.js processes come and go. Private memory (pages no other process maps) does not; ' +
      "kuasard's is also read after it was made to collect its garbage (three full collections a second apart), which is what it really keeps." +
      (result.handlers.some((h) => h.kind === IN_KUASARD_KIND.name && result.memory[h.handler])
        ? ` The ${IN_KUASARD_KIND.name} kind's containers run inside kuasard (${IN_KUASARD_KIND.each}): its figures include the containers themselves, ` +
          `and their slope is the memory of one running ${IN_KUASARD_KIND.name} container (one per pod).`
        : '') +
      ownProcessesNote(result),
    '',
  );
  const measured = (h: HandlerInfo | undefined): h is HandlerInfo => h !== undefined && result.memory[h.handler] !== undefined;
  const baseline = result.handlers.find((h) => h.side === 'baseline' && measured(h));
  const kuasar = result.handlers.filter((h) => h.side === 'kuasar' && measured(h));
  const pointOf = (h: HandlerInfo, pods: number) => result.memory[h.handler]?.points.find((p) => p.pods === pods);

  const columns: { title: string; cell: (pods: number) => string }[] = [];
  for (const h of kuasar) {
    columns.push({ title: `${h.handler}: kuasard PSS`, cell: (pods) => orDash(pointOf(h, pods), (p) => mib(p.pssKb)) });
    const afterGc = result.memory[h.handler]?.points.some((p) => p.afterGc) ?? false;
    columns.push({
      title: `${h.handler}: kuasard private${afterGc ? ' after GC' : ''}`,
      cell: (pods) => orDash(pointOf(h, pods), (p) => mib(afterGc && p.afterGc ? p.afterGc.privateKb : p.privateKb)),
    });
    if (h.pool) {
      columns.push({
        title: `${h.handler}: idle warm pool PSS (VMs)`,
        cell: (pods) => orDash(pointOf(h, pods)?.idlePool, (p) => `${mib(p.pssKb)} (${p.members})`),
      });
    }
    if (podProcessesOf(h.kind)) {
      columns.push({
        title: `${h.handler}: pods' processes PSS`,
        cell: (pods) => orDash(pointOf(h, pods)?.podProcesses, (p) => mib(p.pssKb)),
      });
      columns.push({
        title: `${h.handler}: pods' processes private`,
        cell: (pods) => orDash(pointOf(h, pods)?.podProcesses, (p) => mib(p.privateKb)),
      });
    }
  }
  if (baseline) {
    columns.push({ title: `${baseline.handler}: shims PSS`, cell: (pods) => orDash(pointOf(baseline, pods), (p) => mib(p.pssKb)) });
    columns.push({ title: `${baseline.handler}: shims private`, cell: (pods) => orDash(pointOf(baseline, pods), (p) => mib(p.privateKb)) });
    for (const h of kuasar) {
      columns.push({
        title: `PSS shims / ${h.handler}`,
        cell: (pods) => {
          const k = pointOf(h, pods);
          const b = pointOf(baseline, pods);
          return k && b ? ratio(b.pssKb, k.pssKb) : '-';
        },
      });
    }
    columns.push({ title: `${baseline.handler}: pause PSS`, cell: (pods) => orDash(pointOf(baseline, pods)?.pausePssKb, mib) });
  }
  const counts = [
    ...new Set([...kuasar, ...(baseline ? [baseline] : [])].flatMap((h) => result.memory[h.handler]?.points.map((p) => p.pods) ?? [])),
  ];
  out.push(`| pods | ${columns.map((c) => c.title).join(' | ')} |`, `|---|${columns.map(() => '---').join('|')}|`);
  for (const pods of counts.sort((a, b) => a - b)) out.push(`| ${pods} | ${columns.map((c) => c.cell(pods)).join(' | ')} |`);
  out.push('');

  const fitLine = (fit: { slope: number; intercept: number; r2: number }) =>
    `**${fit.slope.toFixed(1)} KiB per pod**, fixed ${mib(fit.intercept)} MiB (r² ${fit.r2.toFixed(3)})`;
  for (const h of [...kuasar, ...(baseline ? [baseline] : [])]) {
    const memory = result.memory[h.handler];
    if (!memory) continue;
    const afterGc = memory.points.length > 0 && memory.points.every((p) => p.afterGc);
    const fits = [
      ...(memory.fit ? [`PSS ${fitLine(memory.fit)}`] : []),
      ...(memory.fitPrivate ? [`private memory${afterGc ? ' after GC' : ''} ${fitLine(memory.fitPrivate)}`] : []),
    ];
    if (fits.length > 0) out.push(`- ${h.handler}: marginal cost by least-squares fit: ${fits.join('; ')}.`);
    const idle = memory.idle;
    if (idle) {
      const afterGcText = idle.afterGc ? `; after GC ${mib(idle.afterGc.pssKb)} MiB PSS, ${mib(idle.afterGc.privateKb)} MiB private` : '';
      const quiet =
        memory.quietMs === undefined ? '' : ` (read once its memory had stopped moving, after ${(memory.quietMs / 1000).toFixed(0)} s)`;
      out.push(
        `- ${h.handler}: kuasard with no pod${quiet}: ${mib(idle.pssKb)} MiB PSS, ${mib(idle.privateKb)} MiB private, ${mib(idle.rssKb)} MiB RSS${afterGcText}.`,
      );
    }
    const own = podProcessesOf(h.kind);
    if (own && memory.podCost) out.push(`- ${h.handler}: ${describePodCost(memory.podCost)}; ${own.anchor}.`);
    const idlePool = describeIdlePool(h, memory);
    if (idlePool) out.push(`- ${h.handler}: ${idlePool}`);
    if (h.side === 'kuasar') {
      const counted = memory.points.map((p) => p.processes).join(', ');
      out.push(
        memory.helpers.length === 0
          ? `- ${h.handler}: kuasard had no child process other than containers at any point (no helper process).`
          : `- ${h.handler}: kuasard's children other than containers, counted in its figures: ${describeHelpers(memory.helpers)}. Processes counted at each point: ${counted}.`,
      );
    }
  }
  out.push('');
  if (Object.values(result.memory).some((m) => m.podCost)) out.push(...renderPerPod(result));
  return out;
}

/**
 * What one pod costs the host on each measured handler, side by side: its own processes (a VM's
 * QEMU, a gVisor sandbox, the baseline's pause) and the management plane's share (kuasard's slope,
 * or the baseline's shim).
 */
function renderPerPod(result: BenchResult): string[] {
  const out = [
    '### Memory per pod, side by side',
    '',
    "MiB per pod. A pod's own processes: PSS, averaged over the pods of the fullest point. The management plane's share: kuasard's slope " +
      "(private memory after GC where read, as for the targets), or the slope of the baseline's shims' PSS (one shim per pod). " +
      "The containers' own processes on the host (busybox `sleep` of the runc pods) are not counted; a VM's or a gVisor sandbox's hold their containers.",
    '',
    "| handler | the pod's own processes | their PSS | management plane | total |",
    '|---|---|---|---|---|',
  ];
  const mib2 = (kb: number) => (kb / 1024).toFixed(2);
  for (const h of result.handlers) {
    const memory = result.memory[h.handler];
    if (!memory) continue;
    if (h.side === 'baseline') {
      const fullest = [...memory.points].sort((a, b) => b.pods - a.pods)[0];
      const pauseKb = fullest && fullest.pods > 0 && fullest.pausePssKb !== undefined ? fullest.pausePssKb / fullest.pods : undefined;
      const shimKb = memory.fit?.slope;
      const total = pauseKb !== undefined && shimKb !== undefined ? mib2(pauseKb + shimKb) : '-';
      out.push(`| ${h.handler} | pause | ${orDash(pauseKb, mib2)} | ${orDash(shimKb, mib2)} (shim) | ${total} |`);
      continue;
    }
    const cost = memory.podCost;
    if (cost) {
      out.push(
        `| ${h.handler} | ${h.kind}: ${podProcessesOf(h.kind)?.short ?? 'its own'} | ${mib2(cost.processesPssKb)} | ${mib2(cost.kuasardKb)} (kuasard) | ${mib2(cost.pssKb)} |`,
      );
      continue;
    }
    const slope = (memory.fitPrivate ?? memory.fit)?.slope;
    const none = h.kind === IN_KUASARD_KIND.name ? 'none: its containers run inside kuasard' : 'none';
    out.push(`| ${h.handler} | ${none} | ${mib2(0)} | ${orDash(slope, mib2)} (kuasard) | ${orDash(slope, mib2)} |`);
  }
  out.push('');
  return out;
}

/**
 * kuasard's helpers (`pid cmdline`) by program: one per container (runsc wait) would otherwise
 * fill the line with dozens of long command lines.
 */
function describeHelpers(helpers: readonly string[]): string {
  const byProgram = new Map<string, string[]>();
  for (const helper of helpers) {
    const cmdline = helper.slice(helper.indexOf(' ') + 1);
    const program = (cmdline.split(' ')[0] ?? '').split('/').pop() ?? '';
    byProgram.set(program, [...(byProgram.get(program) ?? []), cmdline]);
  }
  return [...byProgram]
    .map(([program, cmdlines]) =>
      cmdlines.length === 1 ? `\`${cmdlines[0]}\`` : `${cmdlines.length} × \`${program}\`, e.g. \`${cmdlines[0]}\``,
    )
    .join('; ');
}

/** For the kinds whose pods keep processes of their own: which processes, and that they are read apart. */
function ownProcessesNote(result: BenchResult): string {
  return result.handlers
    .flatMap((h) => {
      const own = podProcessesOf(h.kind);
      return own && result.memory[h.handler]
        ? [
            ` Each ${h.kind} pod keeps processes of its own on the host (${'cgroupPrefix' in own ? 'in a cgroup of its own' : "kuasard's children, by the name each runs under"}): ${own.what}. ` +
              "They are the pod's, not the management plane's: read at the same moments as kuasard, they are shown apart (\"pods' processes\", all pods together).",
          ]
        : [];
    })
    .join('');
}

/** What a kind's warm pool costs the host per idle member (memory and CPU), read at its memory phase's idle point with the pool full. */
function describeIdlePool(h: HandlerInfo, memory: MemoryResult): string | undefined {
  const pool = h.kind === undefined ? undefined : findKind(h.kind)?.bench?.warmPool;
  const idle = memory.idle?.idlePool;
  if (!pool || !h.pool || !idle || idle.members === 0) return undefined;
  const per = (kb: number) => mib(kb / idle.members);
  const cpu = memory.idlePoolCpu;
  return (
    `the warm pool costs the host per idle VM (its QEMU, \`${pool.argumentPrefix}<id>\`, read with no pod running and the pool full, ` +
    `${idle.members} idle VM${idle.members === 1 ? '' : 's'}) **${per(idle.pssKb)} MiB PSS**, ${per(idle.rssKb)} MiB RSS, ${per(idle.privateKb)} MiB private` +
    (cpu
      ? `, and **${cpu.percentPerMember.toFixed(1)}% of one CPU** (its threads' time on a CPU over ${(cpu.windowMs / 1000).toFixed(0)} s)`
      : '') +
    ". A claimed VM keeps its name and counts as its pod's from then on; idle ones count in no pod's figures and not as kuasard's."
  );
}

/** What one pod costs the host: its own processes plus kuasard's slope (pod-memory.ts). */
function describePodCost(cost: PodMemoryCost): string {
  const mb = (kb: number) => ((kb * 1024) / 1e6).toFixed(1);
  const split = cost.processesPssByMapping;
  return (
    `memory per pod **${mib(cost.pssKb)} MiB PSS (${mb(cost.pssKb)} MB)**, ${mib(cost.privateKb)} MiB private: ` +
    `its own processes ${mib(cost.processesPssKb)} MiB PSS, ${mib(cost.processesPrivateKb)} MiB private (average over the ${cost.pods} pods of the fullest point; ` +
    `their PSS by kind of mapping: anonymous ${mib(split.anonymousKb)} MiB, anonymous and executable (code generated as it runs) ${mib(split.executableAnonymousKb)} MiB, ` +
    `file pages ${mib(split.fileKb)} MiB, shared by the processes that map the same files), ` +
    `plus kuasard's ${cost.kuasardKb.toFixed(1)} KiB per pod (its marginal cost above)`
  );
}

function orDash<T>(value: T | undefined, show: (value: T) => string): string {
  return value === undefined ? '-' : show(value);
}
