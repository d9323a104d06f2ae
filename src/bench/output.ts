// Writes a run's results: <out>/<timestamp>/ with results.json, summary.md and the SVG charts,
// and the same files again in <out>/latest/ (a copy, not a link, so it can be viewed anywhere).
import { cp, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { renderMarkdown, type ChartFile } from './markdown.js';
import type { BenchResult } from './results.js';

export const LATEST_DIR = 'latest';

/** `2026-01-02T03-04-05Z`: sorts by time and is a valid file name everywhere. */
export function runDirName(startedAt: string): string {
  return startedAt.replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
}

/**
 * The chart renderer, or undefined (with a warning) when vega and vega-lite are not installed:
 * they are development dependencies, so that an install for kuasard alone (`npm ci --omit=dev`)
 * does not carry them.
 */
async function loadCharts(warn: (line: string) => void): Promise<typeof import('./charts.js') | undefined> {
  try {
    return await import('./charts.js');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    warn(`no charts: they need the development dependencies vega and vega-lite (npm ci without --omit=dev); ${(err as Error).message}`);
    return undefined;
  }
}

/** Writes everything and returns the run's directory; a chart that fails to render is skipped with a warning. */
export async function writeResults(result: BenchResult, outDir: string, warn: (line: string) => void): Promise<string> {
  const dir = join(outDir, runDirName(result.startedAt));
  await mkdir(dir, { recursive: true });
  const written: ChartFile[] = [];
  const charts = await loadCharts(warn);
  if (charts) {
    for (const chart of charts.benchCharts(result)) {
      try {
        await writeFile(join(dir, chart.file), await charts.renderSvg(chart.spec));
        written.push({ file: chart.file, title: chart.title });
      } catch (err) {
        warn(`chart ${chart.file} could not be rendered: ${(err as Error).message}`);
      }
    }
  }
  await writeFile(join(dir, 'results.json'), `${JSON.stringify(result, null, 2)}\n`);
  await writeFile(join(dir, 'summary.md'), renderMarkdown(result, written));
  const latest = join(outDir, LATEST_DIR);
  await rm(latest, { recursive: true, force: true });
  await cp(dir, latest, { recursive: true });
  return dir;
}
