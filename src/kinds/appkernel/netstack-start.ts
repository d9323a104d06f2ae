// Starting a sandbox whose network gVisor serves itself (runsc --network=sandbox): `runsc start`
// joins the pod's network namespace, reads its interfaces and hands them to the sandbox's
// netstack. Before that, runsc 0.0~20240729 refuses to copy the host's own namespace, and tells it
// by whether /proc/sys/net/core/rmem_default exists, which only the initial namespace had until
// a recent Linux made that sysctl per namespace (6.18, on our hosts, shows it in every one):
// there, every pod's namespace looks like the host's and every sandbox fails to start ("cannot
// run with network enabled in root network namespace").
//
// So kuasard makes that check itself, by the namespace's identity, and runs `runsc start` in a
// mount namespace of its own where an empty tmpfs covers /proc/sys/net: runsc's probe then finds
// no such file, and nothing else of that start reads below /proc/sys/net (the sandbox process,
// which does, is already running in the mount namespace it was created in).
import { statSync } from 'node:fs';
import { failedPrecondition } from '../../base/errors.js';

/** Runs `runsc start` (its arguments follow) with /proc/sys/net hidden, in a mount namespace of its own. */
export const NETSTACK_START_LAUNCHER: readonly string[] = [
  'unshare',
  '--mount',
  '--propagation',
  'private',
  '--',
  'sh',
  '-c',
  'mount -t tmpfs -o size=4k,mode=0555 kuasar-no-net-sysctls /proc/sys/net && exec "$@"',
  'sh',
];

/** Refuses a pod network namespace that is kuasard's own (the host's): its sandbox would copy the node's interfaces. */
export function checkNotHostNetns(netnsPath: string): void {
  const identity = (path: string) => {
    const s = statSync(path);
    return `${s.dev}:${s.ino}`;
  };
  let pod: string;
  try {
    pod = identity(netnsPath);
  } catch (err) {
    throw failedPrecondition(`the pod's network namespace ${netnsPath} cannot be read: ${(err as Error).message}`);
  }
  if (pod === identity('/proc/self/ns/net')) {
    throw failedPrecondition(`the pod's network namespace ${netnsPath} is the host's: its gVisor sandbox would take the node's interfaces`);
  }
}
