// Which OCI runtime the runc kind drives. `oci_runtime = "auto"` (the default) takes crun when
// it is installed and runs the tiny container here, runc otherwise: crun is a small C program
// where runc is a Go one that re-executes itself, and start latency is what the kind is
// measured by. kuasard's first start after the host boots runs the self-test and keeps the
// answer for that boot: a restarted kuasard then serves again without it, and goes on with the
// runtime that holds its containers (runc cannot read crun's state, nor crun runc's). `kuasar
// doctor` runs it every time. A runtime named in the configuration is taken as it is.
import { readFile, writeFile } from 'node:fs/promises';
import { findExecutable } from '../../kind-api/checks.js';
import { crunProfile, runcLikeProfile, runcProfile, type RuntimeProfile } from '../../oci/profiles.js';
import { runTinyContainer } from './tiny-container.js';

export const AUTO_RUNTIME = 'auto';

export interface RuntimeChoice {
  /** The binary, a path when it was found on PATH. */
  binary: string;
  profile: RuntimeProfile;
  /** Why this one, for the log and doctor: "configured", "crun's self-test passed in 12 ms"... */
  why: string;
}

/** What the self-test chose, kept for one boot of the host. */
interface KeptChoice {
  bootId: string;
  crun: string;
  passed: boolean;
  why: string;
}

/**
 * chooseOciRuntime's answer for this boot of the host: for "auto", read from `keptFile` when an
 * earlier kuasard chose with the same crun, else chosen and kept there.
 */
export async function chooseOciRuntimeOncePerBoot(setting: string, scratchDir: string, keptFile: string): Promise<RuntimeChoice> {
  const crun = setting === AUTO_RUNTIME ? await findExecutable(crunProfile.name) : undefined;
  if (!crun) return chooseOciRuntime(setting, scratchDir);
  const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
  // None yet, or unreadable: chosen again.
  const kept = await readFile(keptFile, 'utf8')
    .then((text) => JSON.parse(text) as KeptChoice)
    .catch(() => undefined);
  if (kept?.bootId === bootId && kept.crun === crun) {
    const why = `${kept.why}, at this boot's first start`;
    return kept.passed ? { binary: crun, profile: crunProfile, why } : { ...(await runcChoice()), why };
  }
  const choice = await chooseOciRuntime(setting, scratchDir);
  const record: KeptChoice = { bootId, crun, passed: choice.profile === crunProfile, why: choice.why };
  await writeFile(keptFile, JSON.stringify(record));
  return choice;
}

async function runcChoice(): Promise<Omit<RuntimeChoice, 'why'>> {
  return { binary: (await findExecutable(runcProfile.name)) ?? runcProfile.name, profile: runcProfile };
}

/** The runtime `setting` names, or for "auto" crun when its self-test in `scratchDir` passes, runc otherwise. */
export async function chooseOciRuntime(setting: string, scratchDir: string): Promise<RuntimeChoice> {
  if (setting !== AUTO_RUNTIME) return { binary: setting, profile: runcLikeProfile(setting), why: 'configured' };
  const runc = await runcChoice();
  const crun = await findExecutable(crunProfile.name);
  if (!crun) return { ...runc, why: 'auto: crun is not installed' };
  const test = await runTinyContainer(crun, crunProfile, scratchDir);
  return test.ok
    ? { binary: crun, profile: crunProfile, why: `auto: crun's self-test passed in ${test.ms} ms` }
    : { ...runc, why: `auto: crun's self-test failed (${test.why})` };
}
