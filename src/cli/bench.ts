// `kuasar bench`: pod start latency and management-plane memory of kuasar's handlers against
// containerd's own runc handler, and the Task API container rate of the kind whose containers run
// inside kuasard, on a private containerd + kuasard (root). See bench/README.md.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { IN_KUASARD_KIND } from '../bench/kinds.js';
import { FULL_DEFAULTS, PARTS, QUICK_DEFAULTS, resolveSettings, type BenchOptions } from '../bench/settings.js';

/** <repo>/bench/results, from dist/src/cli/bench.js. */
const DEFAULT_OUT_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../../bench/results');

const withDefaults = (what: string, full: unknown, quick: unknown) => `${what} (default ${String(full)}; --quick: ${String(quick)})`;

/** Adds the `bench` subcommand; the benchmark code itself is loaded only when it runs. */
export function registerBench(program: Command): void {
  program
    .command('bench')
    .description(
      `measure pod start latency and management-plane memory against containerd's runc handler, and ${IN_KUASARD_KIND.name} containers per second through the Task API (root)`,
    )
    .option('--kinds <kinds>', 'comma-separated kuasar kinds to measure (default: every kind kuasard serves)')
    .option('--parts <parts>', `comma-separated parts to run: ${PARTS.join(', ')} (default: all)`)
    .option('--rounds <n>', withDefaults('one-pod-at-a-time starts per handler', FULL_DEFAULTS.singleRounds, QUICK_DEFAULTS.singleRounds))
    .option('--parallel-pods <n>', withDefaults('pods per parallel batch', FULL_DEFAULTS.parallelPods, QUICK_DEFAULTS.parallelPods))
    .option(
      '--parallel-rounds <n>',
      withDefaults('parallel batches per handler', FULL_DEFAULTS.parallelRounds, QUICK_DEFAULTS.parallelRounds),
    )
    .option(
      '--memory-pods <counts>',
      withDefaults('running-pod counts at which memory is read', FULL_DEFAULTS.memoryPods.join(','), QUICK_DEFAULTS.memoryPods.join(',')),
    )
    .option('--settle <ms>', withDefaults('wait before memory is read, ms', FULL_DEFAULTS.settleMs, QUICK_DEFAULTS.settleMs))
    .option('--reads <n>', withDefaults('memory reads per point, one a second', FULL_DEFAULTS.memoryReads, QUICK_DEFAULTS.memoryReads))
    .option(
      '--task-long <n>',
      withDefaults(
        `long-running ${IN_KUASARD_KIND.name} containers started through the Task API`,
        FULL_DEFAULTS.taskLongRunning,
        QUICK_DEFAULTS.taskLongRunning,
      ),
    )
    .option(
      '--task-short <n>',
      withDefaults(
        `short-lived ${IN_KUASARD_KIND.name} containers run to their exit through the Task API`,
        FULL_DEFAULTS.taskShortLived,
        QUICK_DEFAULTS.taskShortLived,
      ),
    )
    .option(
      '--task-concurrency <n>',
      withDefaults('Task API containers in flight at once', FULL_DEFAULTS.taskConcurrency, QUICK_DEFAULTS.taskConcurrency),
    )
    .option('--host-network', 'put pods on the host network instead of the CNI bridge')
    .option('--out <dir>', 'results directory', DEFAULT_OUT_DIR)
    .option('--quick', 'a smoke run: few rounds and pods')
    .action(async (options: BenchOptions) => {
      const settings = resolveSettings(options, DEFAULT_OUT_DIR);
      const { runBench } = await import('../bench/run.js');
      const { BenchProgress } = await import('../bench/progress.js');
      const outcome = await runBench(settings, new BenchProgress());
      const say = (line: string) => process.stdout.write(`${line}\n`);
      say(`\nresults: ${outcome.dir} (and ${resolve(settings.outDir, 'latest')})`);
      if (!outcome.result.complete) say(`incomplete run: ${outcome.result.incomplete}`);
      for (const target of outcome.result.targets) say(`  ${target.status.padEnd(12)} ${target.title}: ${target.measured}`);
      if (outcome.cleanupProblem) {
        say(`the environment was not removed completely: ${outcome.cleanupProblem}`);
        process.exitCode = 1;
      }
      if (!outcome.result.complete) process.exitCode = 1;
    });
}
