// Whether the runc kind can run here: its OCI runtime answers, and (in `kuasar doctor`) runs a
// tiny container for real (tiny-container.ts). With `oci_runtime = "auto"` doctor makes the
// choice kuasard makes at start (runtime-choice.ts) and says which runtime it took and why.
import { type CheckContext, type CheckResult, fail, findExecutable, ok, runForCheck, skipped } from '../../kind-api/checks.js';
import { crunProfile, runcProfile } from '../../oci/profiles.js';
import { parseVersion } from '../../oci/outputs.js';
import { AUTO_RUNTIME, chooseOciRuntime } from './runtime-choice.js';
import { runTinyContainer } from './tiny-container.js';

const VERSION_TIMEOUT_MS = 5_000;

const runtimeFix = (runtime: string) =>
  `install runc (apt-get install runc), or set [kinds.runc] oci_runtime to the runtime's path (now "${runtime}")`;

export async function runcChecks(ociRuntime: string, context: CheckContext): Promise<CheckResult[]> {
  const candidates = ociRuntime === AUTO_RUNTIME ? [crunProfile.name, runcProfile.name] : [ociRuntime];
  const found = (await Promise.all(candidates.map(findExecutable))).find((binary) => binary !== undefined);
  if (!found) {
    const where = ociRuntime.includes('/') ? '' : ' on PATH';
    return [
      fail('oci runtime', `${candidates.join(' or ')}: not found${where}`, runtimeFix(ociRuntime)),
      skipped('tiny container', 'no OCI runtime to run it'),
    ];
  }
  // At start the kind itself chooses (auto) and asks the runtime's version next (kind.ts): no spawn here.
  if (context.depth === 'start') return [ok('oci runtime', found), skipped('tiny container', 'run by `kuasar doctor` only')];
  const choice = await chooseOciRuntime(ociRuntime, context.scratchDir);
  const answer = await runForCheck(choice.binary, ['--version'], VERSION_TIMEOUT_MS);
  if (!answer.ok) {
    return [
      fail('oci runtime', `${choice.binary} --version: ${answer.why}`, runtimeFix(ociRuntime)),
      skipped('tiny container', 'the OCI runtime does not answer'),
    ];
  }
  const version = parseVersion(answer.stdout);
  const runtime = ok(
    'oci runtime',
    `${version.name} ${version.version} (${choice.binary})${version.spec ? `, OCI spec ${version.spec}` : ''}; ${choice.why}`,
  );
  const tiny = await runTinyContainer(choice.binary, choice.profile, context.scratchDir);
  return [
    runtime,
    tiny.ok
      ? ok('tiny container', `ran in new pid, ipc, uts, mount and network namespaces and a cgroup in ${tiny.ms} ms`)
      : fail('tiny container', tiny.why, tiny.fix),
  ];
}
