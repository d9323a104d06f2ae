// Whether the appkernel kind can run here: runsc answers, the idle program of a sandbox's root
// container is built, and (in `kuasar doctor`) gVisor's platforms each run the smallest sandbox,
// the configured one deciding. kuasard probes the configured platform itself as the kind
// starts (kind.ts), where it also reaps the probe's helper processes; its check is left to that.
import { join } from 'node:path';
import { type CheckContext, type CheckResult, fail, findExecutable, ok, runForCheck, skipped } from '../../kind-api/checks.js';
import { parseVersion } from '../../oci/outputs.js';
import { type GvisorPlatform, IDLE_BINARY } from './kind.js';
import { probePlatform } from './platform-probe.js';

const VERSION_TIMEOUT_MS = 5_000;
const PLATFORMS: readonly GvisorPlatform[] = ['systrap', 'ptrace', 'kvm'];

export interface AppkernelCheckConfig {
  runsc: string;
  platform: GvisorPlatform;
  runscFlags: readonly string[];
}

export async function appkernelChecks(config: AppkernelCheckConfig, context: CheckContext): Promise<CheckResult[]> {
  const platformName = `platform ${config.platform}`;
  const idle = (await findExecutable(IDLE_BINARY))
    ? ok('idle program', IDLE_BINARY)
    : fail('idle program', `${IDLE_BINARY} is missing`, 'build it: npm run build:native');
  const binary = await findExecutable(config.runsc);
  if (!binary) {
    const fix = `install gVisor's runsc (scripts/setup-host.sh), or set [kinds.appkernel] runsc to its path (now "${config.runsc}")`;
    return [
      fail('runsc', `${config.runsc}: not found${config.runsc.includes('/') ? '' : ' on PATH'}`, fix),
      idle,
      skipped(platformName, 'no runsc'),
    ];
  }
  // At start the kind itself asks runsc's version and probes the platform next (kind.ts).
  if (context.depth === 'start') return [ok('runsc', binary), idle, skipped(platformName, 'probed as the kind starts (`runsc do true`)')];
  const answer = await runForCheck(binary, ['--version'], VERSION_TIMEOUT_MS);
  if (!answer.ok)
    return [fail('runsc', `${binary} --version: ${answer.why}`, 'reinstall runsc'), idle, skipped(platformName, 'runsc does not answer')];
  const runsc = ok('runsc', `${parseVersion(answer.stdout).version} (${binary})`);
  return [runsc, idle, ...(await platformChecks(binary, config, context.scratchDir))];
}

/** Every platform probed at once; the configured one is the check, the others say what else would work. */
async function platformChecks(runsc: string, config: AppkernelCheckConfig, scratchDir: string): Promise<CheckResult[]> {
  const probes = await Promise.all(
    PLATFORMS.map((platform) =>
      probePlatform(runsc, platform, join(scratchDir, `runsc-${platform}`), config.runscFlags).then(
        (ms) => ({ platform, works: true as const, finding: `ran a sandbox in ${Math.round(ms)} ms` }),
        // probePlatform's message ends with runsc's own words: "(<runsc> do true: <why>)".
        (err: Error) => ({ platform, works: false as const, finding: /do true: (.*)\)$/.exec(err.message)?.[1] ?? err.message }),
      ),
    ),
  );
  const chosen = probes.find((p) => p.platform === config.platform)!;
  const others = probes.filter((p) => p !== chosen);
  const working = others.filter((p) => p.works).map((p) => p.platform);
  const chosenCheck = chosen.works
    ? ok(`platform ${chosen.platform}`, chosen.finding)
    : fail(
        `platform ${chosen.platform}`,
        chosen.finding,
        working.length > 0
          ? `set [kinds.appkernel] platform to ${working.map((p) => `"${p}"`).join(' or ')}`
          : 'no gVisor platform works here',
      );
  const othersCheck = ok('other platforms', others.map((p) => `${p.platform} ${p.works ? 'works' : `does not: ${p.finding}`}`).join('; '));
  return [chosenCheck, othersCheck];
}
