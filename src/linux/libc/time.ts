// The system clock through libc: clock_settime(2) of CLOCK_REALTIME with nanoseconds (Node can
// read the clock, not set it).
import { check, libcGroup } from './binding.js';

interface TimeCalls {
  clockSettime: (clock: number, time: { tv_sec: bigint; tv_nsec: bigint }) => number;
}

const libc = libcGroup<TimeCalls>((lib, koffi) => {
  koffi.struct('kuasar_timespec', { tv_sec: 'int64_t', tv_nsec: 'int64_t' });
  return { clockSettime: lib.func('int clock_settime(int clock, const kuasar_timespec *time)') };
});

const CLOCK_REALTIME = 0;

/** Sets the system's wall clock to `ns` nanoseconds since the epoch (needs CAP_SYS_TIME). */
export function setRealtimeClock(ns: bigint): void {
  const time = { tv_sec: ns / 1_000_000_000n, tv_nsec: ns % 1_000_000_000n };
  check('clock_settime(CLOCK_REALTIME)', libc().clockSettime(CLOCK_REALTIME, time));
}
