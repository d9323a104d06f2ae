// What the vmm kind supports, declared once: its registration shows it to the tests and tools,
// its kind object to the engine. Containers and execs run in the pod's VM with their stdio and
// terminals, and outlive a restart of kuasard; their limits change and they pause in the guest's
// cgroups.
import type { KindCapabilities } from '../../kind-api/kind.js';

export const VMM_CAPABILITIES: KindCapabilities = {
  exec: true,
  terminal: true,
  pauseResume: true,
  updateResources: true,
  streamingIo: true,
  // The VM outlives kuasard, and its agent keeps the containers, the execs, their exits and their
  // unread output: a restarted kuasard reconnects and follows them all again. Their FIFOs were
  // kept open meanwhile (the output goes on into the same CRI log); streams are not opened
  // again by containerd, so what went to one is no longer delivered.
  restart: { containers: true, execs: true, stdio: false },
};
