// What the agent does as the guest's PID 1 before it serves: the file systems an init mounts
// (the initramfs moved only /dev in), a PATH for the tools it runs, the cgroup controllers the
// containers need, and a process that never exits (PID 1 exiting panics the kernel).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';

import { hasErrnoCode } from '../../linux/libc/binding.js';
import { mount, MS } from '../../linux/libc/mounts.js';
import { parseMountInfo } from '../../linux/mountinfo.js';

interface BaseMount {
  target: string;
  fstype: string;
  flags: number;
  data?: string;
}

const NOSUID_NODEV = MS.NOSUID | MS.NODEV;
const SECURE = MS.NOSUID | MS.NODEV | MS.NOEXEC;

/** In order: /sys before the cgroup2 tree below it, /dev (moved in) before /dev/pts and /dev/shm. */
export const BASE_MOUNTS: readonly BaseMount[] = [
  { target: '/proc', fstype: 'proc', flags: SECURE },
  { target: '/sys', fstype: 'sysfs', flags: SECURE },
  { target: '/sys/fs/cgroup', fstype: 'cgroup2', flags: SECURE },
  { target: '/run', fstype: 'tmpfs', flags: NOSUID_NODEV, data: 'mode=0755' },
  { target: '/tmp', fstype: 'tmpfs', flags: NOSUID_NODEV, data: 'mode=1777' },
  { target: '/dev/pts', fstype: 'devpts', flags: MS.NOSUID | MS.NOEXEC, data: 'newinstance,ptmxmode=0666,mode=0620' },
  { target: '/dev/shm', fstype: 'tmpfs', flags: NOSUID_NODEV, data: 'mode=1777' },
];

/** The controllers containers get, where the guest kernel has them. */
export const CONTAINER_CONTROLLERS = ['cpu', 'memory', 'pids', 'io'] as const;

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** What setting up did, for the log (the logger needs /proc, so it comes after). */
export interface Pid1Report {
  mounted: string[];
  alreadyMounted: string[];
  failed: { target: string; error: string }[];
  controllers: string[];
}

/** Mounts the base file systems (tolerating those that are there) and enables the controllers. */
export function setUpAsPid1(): Pid1Report {
  // The initramfs's /init passes its own PATH (/bin) on: the root image's tools are elsewhere too.
  process.env.PATH = DEFAULT_PATH;
  const report: Pid1Report = { mounted: [], alreadyMounted: [], failed: [], controllers: [] };
  for (const base of BASE_MOUNTS) {
    try {
      mkdirSync(base.target, { recursive: true });
      if (isMounted(base.target)) {
        report.alreadyMounted.push(base.target);
        continue;
      }
      mount(base.fstype, base.target, base.fstype, base.flags, base.data ?? null);
      report.mounted.push(base.target);
    } catch (err) {
      if (hasErrnoCode(err, 'EBUSY')) report.alreadyMounted.push(base.target);
      else report.failed.push({ target: base.target, error: (err as Error).message });
    }
  }
  try {
    report.controllers = enableControllers('/sys/fs/cgroup');
  } catch (err) {
    report.failed.push({ target: '/sys/fs/cgroup/cgroup.subtree_control', error: (err as Error).message });
  }
  return report;
}

/** Whether `target` is a mount point; before /proc is mounted nothing is (and /proc/self is absent). */
function isMounted(target: string): boolean {
  if (!existsSync('/proc/self/mountinfo')) return false;
  return parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')).some((m) => m.mountPoint === target);
}

/** Lets the root cgroup's children use the container controllers; returns those enabled. */
export function enableControllers(root: string): string[] {
  const available = readFileSync(`${root}/cgroup.controllers`, 'utf8').trim().split(/\s+/);
  const wanted = CONTAINER_CONTROLLERS.filter((name) => available.includes(name));
  if (wanted.length > 0) writeFileSync(`${root}/cgroup.subtree_control`, wanted.map((name) => `+${name}`).join(' '));
  return wanted;
}

/**
 * Keeps the process alive whatever a bug throws: the error is logged and the agent goes on
 * (PID 1's exit would panic the guest; elsewhere the same holds for the agent's service).
 */
export function neverExitOnErrors(log: (err: unknown, what: string) => void): void {
  process.on('uncaughtException', (err) => log(err, 'uncaught exception'));
  process.on('unhandledRejection', (reason) => log(reason, 'unhandled rejection'));
}
