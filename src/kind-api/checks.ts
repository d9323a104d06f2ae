// Whether this host can run a kind, as a list of checks: what `kuasar doctor` prints and what
// kuasard runs at start to decide which kinds it serves. Each kind owns its checks (its
// registration's `checks`, a module it loads only when asked); the host-wide ones (namespaces,
// cgroups, socket paths, containerd) live in src/doctor.
import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';

/**
 * ok: works. warn: works, but worse than it could (TCG instead of KVM) or something around it is
 * missing (containerd does not register the handler). fail: the kind cannot run here.
 * skipped: not run (another check failed first, or it runs only in `kuasar doctor`).
 */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skipped';

export interface CheckResult {
  /** What was checked, short ("oci runtime", "guest image"). */
  name: string;
  status: CheckStatus;
  /** What was found, one line. */
  finding: string;
  /** How to fix it, one line; given with fail and warn. */
  fix?: string;
}

/**
 * start: what kuasard runs at each start, kept quick (no container, no VM that is not cached per
 * boot). doctor: everything, the slower checks included (a tiny container, every platform).
 */
export type CheckDepth = 'start' | 'doctor';

export interface CheckContext {
  /** <state_dir>/<kind>: where the kind keeps what lasts (the vmm kind's KVM probe, cached per boot). */
  kindDir: string;
  /** A private directory for this run of the checks, removed afterwards. */
  scratchDir: string;
  depth: CheckDepth;
}

export const ok = (name: string, finding: string): CheckResult => ({ name, status: 'ok', finding });
export const warn = (name: string, finding: string, fix: string): CheckResult => ({ name, status: 'warn', finding, fix });
export const fail = (name: string, finding: string, fix: string): CheckResult => ({ name, status: 'fail', finding, fix });
export const skipped = (name: string, finding: string): CheckResult => ({ name, status: 'skipped', finding });

/** Whether a kind whose checks gave `results` can run: none of them failed. */
export const canRun = (results: readonly CheckResult[]): boolean => results.every((r) => r.status !== 'fail');

/**
 * Where `command` (a path, or a name looked up in PATH as spawn does) is, if it is there and
 * executable. Checks say "not found" with this rather than with a spawn's ENOENT.
 */
export async function findExecutable(command: string): Promise<string | undefined> {
  const candidates = command.includes('/') ? [command] : (process.env.PATH ?? '').split(delimiter).map((dir) => join(dir || '.', command));
  for (const candidate of candidates) {
    if (
      await access(candidate, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return candidate;
  }
  return undefined;
}

export interface CommandOutcome {
  /** It exited with 0. */
  ok: boolean;
  stdout: string;
  stderr: string;
  /** Why it did not succeed, one line: its last line of stderr, its exit status, or the time-out. */
  why: string;
}

/** Runs a command for a check, killed (SIGKILL) after `timeoutMs`: a check never hangs on a tool. */
export function runForCheck(command: string, args: readonly string[], timeoutMs: number): Promise<CommandOutcome> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve({ ok: true, stdout, stderr, why: '' });
      const { killed, code, signal } = err as { killed?: boolean; code?: number | string; signal?: string };
      const lastLine = stderr.trim().split('\n').at(-1);
      const why = killed
        ? `no answer within ${timeoutMs} ms`
        : lastLine || (typeof code === 'number' ? `exit status ${code}` : (signal ?? err.message));
      resolve({ ok: false, stdout, stderr, why });
    });
  });
}
