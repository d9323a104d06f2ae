// The guest's own part of a VM's boot, as stage records inside `vmm.agent-ready` (QEMU up until
// the agent's first answer). The host sees only that whole wait; the guest's clocks split it: the
// agent's Check reply carries the guest's uptime (the kernel's clock starts early in its boot), and
// the initramfs's /init prints its uptime on the console when it has mounted the root image and
// hands over to the agent. So, each ending at the agent's answer:
//   vmm.guest-boot   guest kernel start -> agent answered (uptime at Check)
//   vmm.agent-start  root image mounted -> agent answered (the agent's Node.js starting up)
// and what vmm.agent-ready holds besides vmm.guest-boot is QEMU's firmware and kernel loading
// before the guest's clock starts.
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { logStage, timed } from '../../base/stages.js';

export const AGENT_READY_STAGE = 'vmm.agent-ready';
export const GUEST_BOOT_STAGE = 'vmm.guest-boot';
export const AGENT_START_STAGE = 'vmm.agent-start';

/** The line the initramfs's /init prints on the console before it starts the agent (guest/image/init-script.ts). */
const ROOT_MOUNTED = /^kuasar-init: root image mounted at (\d+(?:\.\d+)?)s, starting /m;

/** The guest's uptime, in seconds, when /init had mounted the root image; undefined when the console does not say. */
export function rootMountedUptime(console: string): number | undefined {
  const match = ROOT_MOUNTED.exec(console);
  return match ? Number(match[1]) : undefined;
}

/**
 * The guest's stages of one boot, innermost first (the order to log them in, see logStage):
 * from the guest's uptime when the agent answered and when /init had mounted the root image.
 */
export function guestBootStages(answeredUptimeS: number, rootMountedUptimeS: number | undefined): { stage: string; ms: number }[] {
  const guestBoot = { stage: GUEST_BOOT_STAGE, ms: answeredUptimeS * 1000 };
  if (rootMountedUptimeS === undefined || rootMountedUptimeS > answeredUptimeS) return [guestBoot];
  return [{ stage: AGENT_START_STAGE, ms: (answeredUptimeS - rootMountedUptimeS) * 1000 }, guestBoot];
}

/**
 * Waits for the VM's agent (`open`) as the stage vmm.agent-ready, with the guest's own stages
 * inside it, read from the Check reply and the console log in `consoleLog`.
 */
export function timedAgentReady<T extends { check: { uptimeSeconds: number } }>(
  log: Logger,
  consoleLog: string,
  open: () => Promise<T>,
): Promise<T> {
  return timed(log, AGENT_READY_STAGE, async () => {
    const opened = await open();
    if (log.isLevelEnabled('debug')) {
      const console = await readFile(consoleLog, 'utf8').catch(() => '');
      for (const { stage, ms } of guestBootStages(opened.check.uptimeSeconds, rootMountedUptime(console))) logStage(log, stage, ms);
    }
    return opened;
  });
}
