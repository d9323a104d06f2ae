// The machine a run measured on, for the report: figures only mean something next to the CPUs,
// the memory, the kernel, the versions of containerd and runc, and how busy the host was.
import { execFileSync } from 'node:child_process';
import { cpus, loadavg, release, totalmem } from 'node:os';
import type { HostInfo } from './results.js';

/** The one-minute load average now (0 where the platform has none). */
export function currentLoad(): number {
  return loadavg()[0] ?? 0;
}

/** The host now; `loadStart` is currentLoad() from when the run began. */
export function hostInfo(loadStart: number): HostInfo {
  return {
    cpus: cpus().length,
    memoryGiB: totalmem() / 2 ** 30,
    kernel: release(),
    node: process.versions.node,
    containerd: firstLine('containerd', ['--version']),
    runc: firstLine('runc', ['--version']),
    loadStart,
    loadEnd: currentLoad(),
  };
}

/** The first line a command prints; a missing or failing tool is named, not fatal. */
function firstLine(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8', timeout: 5_000 }).split('\n')[0]?.trim() ?? command;
  } catch {
    return `${command} (version unknown)`;
  }
}
