// Which OCI runtime the runc kind drives. `oci_runtime = "auto"` (the default) takes crun when
// it is installed and runs the tiny container here, runc otherwise: crun starts a container in
// about half of runc's time (a small C program where runc is a Go one that re-executes itself),
// and start latency is what the kind is measured by. The self-test runs at each kuasard start,
// as the host's cgroup layout or crun's version may have changed since the last. A runtime
// named in the configuration is taken as it is.
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

/** The runtime `setting` names, or for "auto" crun when its self-test in `scratchDir` passes, runc otherwise. */
export async function chooseOciRuntime(setting: string, scratchDir: string): Promise<RuntimeChoice> {
  if (setting !== AUTO_RUNTIME) return { binary: setting, profile: runcLikeProfile(setting), why: 'configured' };
  const runc = { binary: (await findExecutable(runcProfile.name)) ?? runcProfile.name, profile: runcProfile };
  const crun = await findExecutable(crunProfile.name);
  if (!crun) return { ...runc, why: 'auto: crun is not installed' };
  const test = await runTinyContainer(crun, crunProfile, scratchDir);
  return test.ok
    ? { binary: crun, profile: crunProfile, why: `auto: crun's self-test passed in ${test.ms} ms` }
    : { ...runc, why: `auto: crun's self-test failed (${test.why})` };
}
