// What memory a process holds and what the host has left, read from /proc, as the kernel counts
// them: a process's resident set (its pages in RAM, shared ones counted whole), and MemAvailable
// (free memory plus what can be reclaimed without swapping).
import { readFile } from 'node:fs/promises';

const KIB = 1024;

/** The `<key>: <n> kB` value of a /proc status-like text, in bytes; undefined when absent. */
export function kibField(text: string, key: string): number | undefined {
  const match = new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text);
  return match ? Number(match[1]) * KIB : undefined;
}

/** The process's resident memory in bytes (VmRSS); undefined when it has exited. */
export async function residentBytes(pid: number): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return kibField(status, 'VmRSS');
}

/** The host's available memory in bytes (MemAvailable). */
export async function hostAvailableBytes(): Promise<number> {
  const available = kibField(await readFile('/proc/meminfo', 'utf8'), 'MemAvailable');
  if (available === undefined) throw new Error('/proc/meminfo has no MemAvailable');
  return available;
}
