// Removing an environment from the host: its processes, mounts, cgroups, bridge and directory.
// It works from the directory alone (plus the record of the daemons it started), so the same
// code stops a live environment and sweeps one that a killed test run left behind.
import { existsSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from './exec.js';
import { ENV_DIR_PARENT, environmentNames, environmentPaths, isEnvironmentDir } from './layout.js';
import { isWithin as isUnder } from '../linux/mountinfo.js';
import { cgroupHierarchies, unmountUnder } from './mounts.js';
import { deleteBridge } from './network.js';
import { processesOfScope } from './ownership.js';
import { isSameProcessRunning } from '../linux/proc.js';
import { isSameProcessPresent, listProcesses } from './processes.js';

export interface ProcessRef {
  pid: number;
  startTime: string;
}

/** Written to <dir>/devenv.json: who made the environment and which daemons it runs. */
export interface EnvironmentRecord {
  owner: ProcessRef;
  daemons: Record<string, ProcessRef>;
}

/** Where the CNI library used by containerd caches ADD results (named <network>-<id>-<ifname>, JSON). */
const CNI_CACHE_DIR = '/var/lib/cni/results';
const KILL_WAIT_MS = 5_000;

export function writeRecord(path: string, record: EnvironmentRecord): void {
  writeFileSync(`${path}.tmp`, JSON.stringify(record), { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

export function readRecord(path: string): EnvironmentRecord | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as EnvironmentRecord;
  } catch {
    return undefined;
  }
}

/**
 * Removes everything of the environment in `dir`. Every step runs even when an earlier one
 * failed; the failures are reported together at the end.
 */
export async function teardownEnvironment(dir: string): Promise<void> {
  const names = environmentNames(dir);
  const paths = environmentPaths(dir);
  const record = readRecord(paths.record);
  const problems: string[] = [];
  const step = async (what: string, action: () => Promise<unknown> | void) => {
    try {
      await action();
    } catch (err) {
      problems.push(`${what}: ${(err as Error).message}`);
    }
  };

  const daemons = Object.values(record?.daemons ?? {}).filter((d) => isSameProcessRunning(d.pid, d.startTime));
  await step('stopping the daemons', () => terminate(daemons));
  await step('killing the processes left', () => killEnvironmentProcesses(dir, names.cgroupName, names.bridge));
  await step('unmounting', () => unmountUnder(dir));
  await step('removing cgroups', () => removeCgroups(names.cgroupName));
  await step('removing pod links', () => deleteLinksOf(names.bridge));
  await step('removing the bridge', () => deleteBridge(names.bridge));
  await step('removing CNI cache entries', () => removeCniCache(dir, names.network));
  await step('removing the directory', () => rmSync(dir, { recursive: true, force: true }));
  if (problems.length > 0) throw new Error(`teardown of ${dir} incomplete:\n  ${problems.join('\n  ')}`);
}

/**
 * Tears down environments whose owner process is gone (a test run that was killed). Returns the
 * directories removed. Environments of live owners, other people's included, are left alone.
 * Every stale environment is tried; failures are thrown together at the end.
 */
export async function sweepStaleEnvironments(): Promise<string[]> {
  const swept: string[] = [];
  const failures: string[] = [];
  for (const entry of readdirSync(ENV_DIR_PARENT)) {
    const dir = join(ENV_DIR_PARENT, entry);
    if (!isEnvironmentDir(dir)) continue;
    const record = readRecord(environmentPaths(dir).record);
    // The record is written right after the directory is made; without one, the maker died in
    // between (or is in between right now, which the age check allows for).
    const stale = record ? !isSameProcessRunning(record.owner.pid, record.owner.startTime) : isOlderThan(dir, 60_000);
    if (!stale) continue;
    try {
      await teardownEnvironment(dir);
      swept.push(dir);
    } catch (err) {
      failures.push((err as Error).message);
    }
  }
  if (failures.length > 0) throw new Error(failures.join('\n'));
  return swept;
}

/** SIGTERM, then SIGKILL for those still there after a grace period. */
async function terminate(processes: readonly ProcessRef[]): Promise<void> {
  for (const p of processes) signal(p.pid, 'SIGTERM');
  await waitGone(processes, KILL_WAIT_MS);
  const left = processes.filter((p) => isSameProcessRunning(p.pid, p.startTime));
  for (const p of left) signal(p.pid, 'SIGKILL');
  await waitGone(left, KILL_WAIT_MS);
}

/**
 * SIGKILLs every process tied to the environment (shims, containers, helpers) until none is
 * left. Orphans are reaped by PID 1, which may take a second: a zombie is waited for, not killed.
 */
async function killEnvironmentProcesses(dir: string, cgroupName: string, bridge: string): Promise<void> {
  const scope = { dir, cgroupName, bridge, daemonPids: [] };
  const find = () => {
    const processes = listProcesses().filter((p) => p.pid !== process.pid);
    const ours = processesOfScope(processes, scope);
    return processes.filter((p) => ours.has(p.pid));
  };
  for (let round = 0; round < 5; round++) {
    const targets = find();
    if (targets.length === 0) return;
    for (const p of targets) if (p.state !== 'Z') signal(p.pid, 'SIGKILL');
    await waitGone(targets, KILL_WAIT_MS);
  }
  const left = find().filter((p) => p.state !== 'Z');
  if (left.length > 0) throw new Error(`processes survived SIGKILL: ${left.map((p) => `${p.pid} ${p.cmdline}`).join('; ')}`);
}

/** Waits until the processes are gone, zombies included (they still hold their pids). */
async function waitGone(processes: readonly ProcessRef[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (processes.some((p) => isSameProcessPresent(p.pid, p.startTime)) && Date.now() < deadline) await sleep(50);
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}

/** Removes <hierarchy>/<cgroupName> and everything below it, deepest first, in every hierarchy. */
function removeCgroups(cgroupName: string): void {
  const failures: string[] = [];
  const removeTree = (path: string) => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      if (entry.isDirectory()) removeTree(join(path, entry.name));
    }
    try {
      rmdirSync(path);
    } catch (err) {
      failures.push(`${path} (${(err as NodeJS.ErrnoException).code})`);
    }
  };
  for (const root of cgroupHierarchies()) {
    const path = join(root, cgroupName);
    if (existsSync(path)) removeTree(path);
  }
  if (failures.length > 0) throw new Error(`cannot remove ${failures.join(', ')}`);
}

/** Pod veths still enslaved to the bridge (their netns normally takes them along when it goes). */
async function deleteLinksOf(bridge: string): Promise<void> {
  let links: string[];
  try {
    links = readdirSync(`/sys/class/net/${bridge}/brif`);
  } catch {
    return;
  }
  for (const link of links) await run('ip', ['link', 'del', link]).catch(() => undefined);
}

/**
 * CNI results that containerd cached for the environment's pods (DEL removes them; a pod killed
 * with its environment never gets one): the bridge network's entries carry its name, and
 * containerd's loopback entries name a netns below the private directory.
 */
function removeCniCache(dir: string, network: string): void {
  let entries: string[];
  try {
    entries = readdirSync(CNI_CACHE_DIR);
  } catch {
    return;
  }
  for (const entry of entries) {
    const path = join(CNI_CACHE_DIR, entry);
    if (entry.startsWith(`${network}-`) || isUnder(cachedNetns(path), dir)) rmSync(path, { force: true });
  }
}

function cachedNetns(path: string): string {
  try {
    return String((JSON.parse(readFileSync(path, 'utf8')) as { netns?: unknown }).netns ?? '');
  } catch {
    return '';
  }
}

function isOlderThan(path: string, ageMs: number): boolean {
  try {
    return Date.now() - statSync(path).mtimeMs > ageMs;
  } catch {
    return false;
  }
}
