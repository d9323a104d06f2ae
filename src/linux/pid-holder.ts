// The holder of a pod's shared PID namespace. When the containers of a pod share one PID
// namespace, a process must be its PID 1 for the pod's whole life: the namespace dies with its
// init, and the orphans of every container are re-parented to that init, which must reap them.
// catatonit in pause mode (-P) is exactly that and nothing more: a PID 1 that reaps and waits.
//
// One process, no helper: for one synchronous spawn, this thread's pid_for_children moves to a
// new PID namespace (unshare(CLONE_NEWPID)) and then back to our own (setns), so the spawned
// process is PID 1 of the new namespace and no other child of the daemon ever lands there (JS
// runs nothing else in between). The spawned nsenter first joins the pod's network, IPC and UTS
// namespaces and then execs catatonit, so that every /proc/<pid>/ns/* of the holder is the
// pod's: what containerd assumes of a sandbox pid.
//
// The holder runs in a session of its own and outlives a daemon restart; its pid and start time
// (saved by the caller) find it again. Like a pause container, it lives in a cgroup of its own
// below the pod's: accounted to the pod, and out of the daemon's cgroup, so that a service
// manager restarting the daemon does not take the pod's PID namespace down with it.

import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import { failedPrecondition, internal } from '../base/errors.js';
import { joinCgroup, parseProcCgroup, removeCgroup } from './cgroups.js';
import { hasErrnoCode } from './libc/binding.js';
import { CLONE_NEWPID, setns, unshare } from './libc/namespaces.js';
import { isSameProcessRunning, readProcStat } from './proc.js';

/** The pause-mode init; Debian and most distributions package it (podman uses it the same way). */
export const HOLDER_BINARY = 'catatonit';

/** The program that holds the namespace: any init that only reaps and waits. */
export interface HolderProgram {
  /** Path or name (looked up in PATH), and its arguments. */
  command: readonly string[];
  /** Its process name (comm) once it runs: how a started holder is recognised. */
  comm: string;
}

/** catatonit in pause mode (-P). The guest agent uses kuasar-idle instead (native/kuasar-idle.c). */
export const CATATONIT: HolderProgram = { command: [HOLDER_BINARY, '-P'], comm: HOLDER_BINARY };
const READY_TIMEOUT_MS = 5_000;
const STOP_TIMEOUT_MS = 5_000;
const POLL_MS = 5;

export interface PidNamespaceHolder {
  pid: number;
  /** From /proc/<pid>/stat: with the pid, names this process across pid reuse. */
  startTime: string;
  /** The holder's own cgroup (a cgroupfs path), or null when it stayed in the daemon's. */
  cgroupsPath?: string | null;
}

/** Namespaces (nsfs paths) the holder joins; absent ones stay the host's. */
export interface HolderNamespaces {
  netns?: string;
  ipc?: string;
  uts?: string;
}

/** The nsenter command line that joins `join` and runs the holder program. */
export function holderCommand(join: HolderNamespaces, program: HolderProgram = CATATONIT): string[] {
  const enter = [
    ...(join.netns ? [`--net=${join.netns}`] : []),
    ...(join.ipc ? [`--ipc=${join.ipc}`] : []),
    ...(join.uts ? [`--uts=${join.uts}`] : []),
  ];
  return enter.length > 0 ? ['nsenter', ...enter, '--', ...program.command] : [...program.command];
}

/** Spawns `command` as PID 1 of a new PID namespace, a child of the host's. */
function spawnInNewPidNamespace(command: string[]) {
  const own = openSync('/proc/self/ns/pid', 'r');
  try {
    unshare(CLONE_NEWPID);
    try {
      return spawn(command[0]!, command.slice(1), { stdio: 'ignore', detached: true });
    } finally {
      // Must not fail silently: every later child (runc included) would land in the pod's namespace.
      try {
        setns(own, CLONE_NEWPID);
      } catch (err) {
        // biome-ignore lint/correctness/noUnsafeFinally: a failed return must win over the spawn's result, or later children start in the pod's namespace
        throw internal(`returning to the daemon's PID namespace after starting a holder: ${(err as Error).message}`, err);
      }
    }
  } finally {
    closeSync(own);
  }
}

/**
 * Starts the holder of a new PID namespace; resolves once catatonit runs as its PID 1, in the
 * cgroup `cgroupsPath` (made below its parent, where the parent exists).
 */
export async function startPidNamespaceHolder(
  join: HolderNamespaces,
  cgroupsPath?: string,
  program: HolderProgram = CATATONIT,
): Promise<PidNamespaceHolder> {
  const holder = await spawnHolder(join, program);
  if (!cgroupsPath) return { ...holder, cgroupsPath: null };
  try {
    const joined = await joinCgroup(cgroupsPath, holder.pid);
    return { ...holder, cgroupsPath: joined.length > 0 ? cgroupsPath : null };
  } catch (err) {
    await stopPidNamespaceHolder({ ...holder, cgroupsPath }).catch(() => undefined);
    throw internal(`move the PID namespace holder into cgroup ${cgroupsPath}: ${(err as Error).message}`, err);
  }
}

async function spawnHolder(join: HolderNamespaces, program: HolderProgram): Promise<PidNamespaceHolder> {
  const child = spawnInNewPidNamespace(holderCommand(join, program));
  let failure: string | undefined;
  child.on('error', (err) => {
    failure = hasErrnoCode(err, 'ENOENT') ? `${child.spawnfile} is not installed` : err.message;
  });
  child.on('exit', (code, signal) => {
    failure ??= `it exited (${signal ?? `status ${code}`}) before it was ready`;
  });
  // The holder lives on its own; the daemon must not wait for it to exit.
  child.unref();

  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (failure !== undefined) throw failedPrecondition(`start the PID namespace holder (${program.comm}): ${failure}`);
    const stat = child.pid === undefined ? undefined : readProcStat(child.pid);
    if (stat && stat.comm === program.comm && stat.state !== 'Z') return { pid: stat.pid, startTime: stat.startTime };
    if (Date.now() > deadline) {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      throw internal(`start the PID namespace holder: ${program.comm} did not start within ${READY_TIMEOUT_MS} ms`);
    }
    await sleep(POLL_MS);
  }
}

export function isHolderRunning(holder: PidNamespaceHolder): boolean {
  return isSameProcessRunning(holder.pid, holder.startTime);
}

/** The nsfs path of the holder's PID namespace, for containers to join; FailedPrecondition once it is gone. */
export function holderPidNamespacePath(holder: PidNamespaceHolder): string {
  if (!isHolderRunning(holder)) {
    throw failedPrecondition(`the pod's PID namespace is gone: its holder (pid ${holder.pid}) has exited`);
  }
  return `/proc/${holder.pid}/ns/pid`;
}

/**
 * Kills the holder, which takes down every process left in its namespace, waits until it has
 * exited and removes its cgroup. Nothing to kill when it is gone already (or its pid names
 * another process now).
 */
export async function stopPidNamespaceHolder(holder: PidNamespaceHolder): Promise<void> {
  if (isHolderRunning(holder)) {
    try {
      process.kill(holder.pid, 'SIGKILL');
    } catch (err) {
      if (!hasErrnoCode(err, 'ESRCH')) throw err;
    }
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (isHolderRunning(holder)) {
      if (Date.now() > deadline) throw internal(`stop the PID namespace holder ${holder.pid}: still running after SIGKILL`);
      await sleep(POLL_MS);
    }
  }
  if (holder.cgroupsPath) await removeCgroup(holder.cgroupsPath);
}

/** What names the holders of one pod when their record is lost. */
export interface HolderMatch {
  /** The pod's pinned namespace files (nsfs bind mounts); missing ones are skipped. */
  namespaceFiles: readonly string[];
  /** The name of the holder's own cgroup (the last part of its path). */
  cgroupName: string;
}

/**
 * Holders whose record was lost (the daemon died between starting one and saving it, or the
 * pod's state file is unusable): running catatonit processes in one of the pod's pinned
 * namespaces, or in a cgroup of the holder's name. A scan of /proc: only for a pod whose record
 * cannot say.
 */
export function findHolders(match: HolderMatch): PidNamespaceHolder[] {
  const namespaces = new Set(match.namespaceFiles.flatMap((file) => fileIdentity(file) ?? []));
  const found: PidNamespaceHolder[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const stat = readProcStat(Number(name));
    if (!stat || stat.comm !== HOLDER_BINARY || stat.state === 'Z') continue;
    const cgroupsPath = cgroupPathNamed(stat.pid, match.cgroupName);
    const inPodNamespace = (['ipc', 'uts'] as const).some((ns) => namespaces.has(fileIdentity(`/proc/${stat.pid}/ns/${ns}`) ?? ''));
    if (cgroupsPath !== undefined || inPodNamespace)
      found.push({ pid: stat.pid, startTime: stat.startTime, cgroupsPath: cgroupsPath ?? null });
  }
  return found;
}

/**
 * Stops the holders `findHolders` finds for a pod whose record was lost, and removes the holder's
 * cgroup `cgroupsPath` even where no holder is in it: a daemon that died inside
 * startPidNamespaceHolder may have made that cgroup before moving the holder in, and then the
 * holder is found by its namespaces only (or, killed since, not at all).
 */
export async function stopLostHolders(match: HolderMatch, cgroupsPath?: string): Promise<PidNamespaceHolder[]> {
  const lost = findHolders(match);
  for (const holder of lost) await stopPidNamespaceHolder(holder);
  if (cgroupsPath) await removeCgroup(cgroupsPath);
  return lost;
}

/**
 * Device and inode: what names a namespace (nsfs) file. The device counts too: a pin file whose
 * bind mount is gone is a plain file whose inode number may equal some namespace's.
 */
function fileIdentity(path: string): string | undefined {
  try {
    const stat = statSync(path);
    return `${stat.dev}:${stat.ino}`;
  } catch {
    return undefined;
  }
}

/** The process's cgroup path whose last part is `name`, in any hierarchy. */
function cgroupPathNamed(pid: number, name: string): string | undefined {
  try {
    return parseProcCgroup(readFileSync(`/proc/${pid}/cgroup`, 'utf8')).find((c) => c.path.endsWith(`/${name}`))?.path;
  } catch {
    return undefined;
  }
}
