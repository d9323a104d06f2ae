// SyncClock: the guest's wall clock set to the host's. A VM's clock starts from the RTC QEMU
// emulates and drifts after a host suspend or under TCG; the host sends its time once the VM has
// booted, then periodically and whenever its own clock jumps (kinds/vmm/guest-clocks.ts).
import { failedPrecondition, invalidArgument } from '../../base/errors.js';
import { setRealtimeClock } from '../../linux/libc/time.js';

/** The wall clock now, nanoseconds since the epoch (microsecond precision: what Node offers). */
export function wallClockNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
}

/**
 * Sets the clock (only as the guest's init: elsewhere the clock is the machine's, not ours) and
 * returns what it said before.
 */
export function syncClock(hostTimeNs: bigint, ownsTheClock: boolean): bigint {
  if (hostTimeNs <= 0n) throw invalidArgument(`host time ${hostTimeNs} ns is not a time after the epoch`);
  if (!ownsTheClock) throw failedPrecondition('the agent runs outside a VM: it does not set the machine clock');
  const before = wallClockNs();
  setRealtimeClock(hostTimeNs);
  return before;
}
