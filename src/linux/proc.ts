// /proc/<pid>/stat: the facts that name a process across pid reuse (its start time) and say
// whether it still runs (its state). Used to re-find container processes after a restart.
import { readdirSync, readFileSync } from 'node:fs';

export interface ProcStat {
  pid: number;
  /** The command name (`comm`), at most 15 characters. */
  comm: string;
  /** R, S, D, T, Z (zombie: exited, not yet reaped)... */
  state: string;
  ppid: number;
  /** Clock ticks since boot when it started: with the pid, names one process. */
  startTime: string;
}

/** Parses a stat line; the command name is in parentheses and may hold spaces and parentheses. */
export function parseProcStat(pid: number, text: string): ProcStat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  const fields = text.slice(close + 2).split(' ');
  return { pid, comm: text.slice(open + 1, close), state: fields[0] ?? '', ppid: Number(fields[1]), startTime: fields[19] ?? '' };
}

/** The process's stat, or undefined when it does not exist (any more). */
export function readProcStat(pid: number): ProcStat | undefined {
  try {
    return parseProcStat(pid, readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** True while the process with this pid and start time runs (a zombie has exited). */
export function isSameProcessRunning(pid: number, startTime: string): boolean {
  const stat = readProcStat(pid);
  return stat !== undefined && stat.startTime === startTime && stat.state !== 'Z';
}

/**
 * This process's children (of every thread: a child's parent is the thread that forked it, or
 * this process when the child was re-parented to it as a subreaper), from /proc/self/task/<tid>/children.
 */
export function ownChildren(): number[] {
  const pids: number[] = [];
  for (const tid of readdirSync('/proc/self/task')) {
    let text = '';
    try {
      text = readFileSync(`/proc/self/task/${tid}/children`, 'utf8');
    } catch {
      // The thread ended meanwhile.
    }
    for (const field of text.split(' ')) if (field.trim()) pids.push(Number(field));
  }
  return pids;
}
