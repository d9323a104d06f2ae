// `kuasar doctor`'s output: for people, the host's checks then each kind's, grouped, a fix under
// each failure and warning, and what kuasard would do; for programs, the same as JSON.
import type { CheckResult } from '../kind-api/checks.js';
import { type DoctorReport, exitStatus, type KindReport, servePlan } from './run.js';

const NAME_WIDTH = 18;

function formatCheck(check: CheckResult): string[] {
  const lines = [`  ${check.status.padEnd(7)} ${check.name.padEnd(NAME_WIDTH)} ${check.finding}`];
  if (check.fix && (check.status === 'fail' || check.status === 'warn'))
    lines.push(`  ${''.padEnd(7)} ${''.padEnd(NAME_WIDTH)} fix: ${check.fix}`);
  return lines;
}

function kindHeading(kind: KindReport): string {
  const verdict = kind.canRun ? 'can run here' : 'cannot run here';
  const served =
    kind.enabled === false
      ? 'off (enabled = false)'
      : kind.canRun
        ? 'served'
        : kind.enabled === true
          ? 'kuasard refuses to start'
          : 'not served';
  return `${kind.name}: ${verdict}; enabled = ${JSON.stringify(kind.enabled)}: ${served}`;
}

export function formatReport(report: DoctorReport): string {
  const lines = ['host', ...report.host.flatMap(formatCheck)];
  for (const kind of report.kinds) lines.push('', kindHeading(kind), ...kind.checks.flatMap(formatCheck));
  const plan = servePlan(report);
  lines.push('');
  if (plan.refusal) lines.push(`kuasard would refuse to start: ${plan.refusal}`);
  else
    lines.push(
      `kuasard would serve ${plan.serve.join(', ')}${plan.leave.length > 0 ? `; not ${plan.leave.map((k) => k.name).join(', ')}` : ''}`,
    );
  return `${lines.join('\n')}\n`;
}

export function reportJson(report: DoctorReport): string {
  const plan = servePlan(report);
  return `${JSON.stringify({ ...report, served: plan.serve, refusal: plan.refusal ?? null, exitStatus: exitStatus(report) }, null, 2)}\n`;
}
