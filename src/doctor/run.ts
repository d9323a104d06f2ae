// Runs the checks of the host and of each kind for one configuration: `kuasar doctor` (depth
// "doctor": everything) and kuasard at start (depth "start": the quick ones). A kind can run
// when none of its checks failed and no host check did. Kinds are checked at once, each with a
// time-out over all its checks besides the one each tool gets (a check never hangs doctor or
// kuasard's start).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../config/config.js';
import type { KindEnabled } from '../config/kind-schema.js';
import { type CheckDepth, type CheckResult, canRun, fail } from '../kind-api/checks.js';
import type { KindRegistration } from '../kind-api/registration.js';
import { findKind, KIND_NAMES, type KindName } from '../kinds/index.js';
import {
  containerdConfigCheck,
  containerdVersionCheck,
  criHandlerCheck,
  DEFAULT_CONTAINERD_CONFIG,
  readContainerdConfig,
  restrictsOomScoreAdj,
} from './containerd-checks.js';
import { cgroupsCheck, namespacesCheck, oomScoreAdjCheck, rootCheck } from './host-checks.js';
import { adminSocketCheck, socketPathsCheck } from './socket-paths.js';
import { controllerSocketPath } from '../config/config.js';

/** The most one kind's checks may take together (each tool has its own, shorter, time-out). */
const KIND_CHECKS_TIMEOUT_MS = 60_000;

export interface KindReport {
  name: KindName;
  enabled: KindEnabled;
  /** No check of the kind's, and none of the host's, failed. */
  canRun: boolean;
  checks: CheckResult[];
}

export interface DoctorReport {
  depth: CheckDepth;
  host: CheckResult[];
  kinds: KindReport[];
}

export interface RunOptions {
  depth: CheckDepth;
  /** The kinds to check (default: all of them, enabled or not). */
  kinds?: readonly KindName[];
  /** containerd's configuration, checked at depth "doctor" (default /etc/containerd/config.toml). */
  containerdConfig?: string;
}

export async function runChecks(config: Config, options: RunOptions): Promise<DoctorReport> {
  const { depth } = options;
  const scratch = await mkdtemp(join(tmpdir(), 'kuasar-checks-'));
  try {
    const containerd = depth === 'doctor' ? await readContainerdConfig(options.containerdConfig ?? DEFAULT_CONTAINERD_CONFIG) : undefined;
    const hostChecks = Promise.all([
      rootCheck(),
      namespacesCheck(),
      cgroupsCheck(),
      oomScoreAdjCheck(containerd && restrictsOomScoreAdj(containerd)),
      Promise.resolve(adminSocketCheck(config)),
      ...(containerd ? [containerdVersionCheck(), Promise.resolve(containerdConfigCheck(containerd))] : []),
    ]);
    const kindChecks = Promise.all(
      (options.kinds ?? KIND_NAMES).map(async (name) => {
        const checks = [socketPathsCheck(config, name), ...(await ownChecks(config, name, depth, join(scratch, name)))];
        if (containerd) checks.push(criHandlerCheck(containerd, name, controllerSocketPath(config, name)));
        return { name, enabled: config.kinds[name].enabled, checks };
      }),
    );
    const host = await hostChecks;
    const kinds = (await kindChecks).map((kind) => ({ ...kind, canRun: canRun(host) && canRun(kind.checks) }));
    return { depth, host, kinds };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** The kind's own checks (its registration's), a failure or a time-out of theirs a failed check. */
async function ownChecks(config: Config, name: KindName, depth: CheckDepth, scratchDir: string): Promise<CheckResult[]> {
  const registration = findKind(name) as KindRegistration;
  const context = { kindDir: join(config.state_dir, name), scratchDir, depth };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<CheckResult[]>((resolve) => {
    timer = setTimeout(
      () => resolve([fail('checks', `no answer within ${KIND_CHECKS_TIMEOUT_MS} ms`, 'run `kuasar doctor` to see which check hangs')]),
      KIND_CHECKS_TIMEOUT_MS,
    );
  });
  const checks = registration
    .checks(config.kinds[name], context)
    .catch((err: Error) => [fail('checks', `the checks themselves failed: ${err.message}`, 'report this as a bug, with the message')]);
  try {
    return await Promise.race([checks, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** What kept a kind from running: its failed checks and the host's, each "name: finding (fix)". */
export function failures(report: DoctorReport, kind: KindReport): string[] {
  return [...report.host.map((c) => ({ ...c, name: `host ${c.name}` })), ...kind.checks]
    .filter((c) => c.status === 'fail')
    .map((c) => `${c.name}: ${c.finding}${c.fix ? ` (fix: ${c.fix})` : ''}`);
}

/**
 * What kuasard makes of a report: the kinds it serves, those it leaves ("auto" that cannot run),
 * and why it refuses to start, if it does: a kind enabled = true cannot run, or none can.
 */
export interface ServePlan {
  serve: KindName[];
  leave: { name: KindName; reasons: string[] }[];
  refusal?: string;
}

export function servePlan(report: DoctorReport): ServePlan {
  const candidates = report.kinds.filter((k) => k.enabled !== false);
  const serve = candidates.filter((k) => k.canRun).map((k) => k.name);
  const leave = candidates.filter((k) => !k.canRun).map((k) => ({ name: k.name, reasons: failures(report, k) }));
  const required = candidates.filter((k) => k.enabled === true && !k.canRun);
  if (required.length > 0) {
    const why = required.map((k) => `${k.name} is enabled = true but cannot run here: ${failures(report, k).join('; ')}`);
    return { serve, leave, refusal: why.join('\n') };
  }
  if (serve.length === 0) {
    const why = leave.map((k) => `${k.name}: ${k.reasons.join('; ')}`);
    return {
      serve,
      leave,
      refusal: `no sandbox kind can run here${why.length > 0 ? `:\n${why.join('\n')}` : ' (every kind is enabled = false)'}`,
    };
  }
  return { serve, leave };
}

/** `kuasar doctor`'s exit status: 1 when kuasard with this configuration would refuse to start (servePlan). */
export const exitStatus = (report: DoctorReport): 0 | 1 => (servePlan(report).refusal === undefined ? 0 : 1);
