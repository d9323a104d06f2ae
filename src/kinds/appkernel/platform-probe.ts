// Whether the configured gVisor platform works on this host, found by running the smallest
// sandbox runsc can make (`runsc do true`: the host's root as the container's, no network) at
// kuasard's start. A platform the host lacks fails quickly (kvm without /dev/kvm, ~60 ms); one
// that hangs (nested KVM) is cut off by the time-out. A systrap probe takes about 300 ms.
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { failedPrecondition } from '../../base/errors.js';

const run = promisify(execFile);
const PROBE_TIMEOUT_MS = 10_000;

/** Resolves with the probe's duration in ms; FailedPrecondition (with runsc's words) when the platform cannot run a sandbox. */
export async function probePlatform(runsc: string, platform: string, probeRoot: string, flags: readonly string[]): Promise<number> {
  await mkdir(probeRoot, { recursive: true, mode: 0o700 });
  const started = performance.now();
  try {
    await run(runsc, ['--root', probeRoot, `--platform=${platform}`, '--network=none', ...flags, 'do', 'true'], {
      timeout: PROBE_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    return performance.now() - started;
  } catch (err) {
    const { stderr, killed, message } = err as { stderr?: string; killed?: boolean; message: string };
    const why = killed ? `no answer within ${PROBE_TIMEOUT_MS} ms` : (stderr?.trim().split('\n').at(-1) ?? message);
    throw failedPrecondition(`appkernel: gVisor's ${platform} platform cannot run a sandbox here (${runsc} do true: ${why})`);
  } finally {
    await rm(probeRoot, { recursive: true, force: true });
  }
}
