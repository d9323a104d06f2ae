// Writes a run's results: <out>/<timestamp>/ with results.json, summary.md and the SVG charts,
// and the same files again in <out>/latest/ (a copy, not a link, so it can be viewed anywhere).
import { cp, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { benchCharts, renderSvg } from './charts.js';
import { renderMarkdown, type ChartFile } from './markdown.js';
import type { BenchResult } from './results.js';

export const LATEST_DIR = 'latest';

/** `2026-01-02T03-04-05Z`: sorts by time and is a valid file name everywhere. */
export function runDirName(startedAt: string): string {
  return startedAt.replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');
}

/** Writes everything and returns the run's directory; a chart that fails to render is skipped with a warning. */
export async function writeResults(result: BenchResult, outDir: string, warn: (line: string) => void): Promise<string> {
  const dir = join(outDir, runDirName(result.startedAt));
  await mkdir(dir, { recursive: true });
  const written: ChartFile[] = [];
  for (const chart of benchCharts(result)) {
    try {
      await writeFile(join(dir, chart.file), await renderSvg(chart.spec));
      written.push({ file: chart.file, title: chart.title });
    } catch (err) {
      warn(`chart ${chart.file} could not be rendered: ${(err as Error).message}`);
    }
  }
  await writeFile(join(dir, 'results.json'), `${JSON.stringify(result, null, 2)}\n`);
  await writeFile(join(dir, 'summary.md'), renderMarkdown(result, written));
  const latest = join(outDir, LATEST_DIR);
  await rm(latest, { recursive: true, force: true });
  await cp(dir, latest, { recursive: true });
  return dir;
}
