// What the vmm kind supports, declared once: its registration shows it to the tests and tools,
// its kind object to the engine. Containers and execs run in the pod's VM with their stdio and
// terminals; their limits change and they pause in the guest's cgroups; recovery across a
// restart is not there yet.
import type { KindCapabilities } from '../../kind-api/kind.js';

export const VMM_CAPABILITIES: KindCapabilities = {
  exec: true,
  terminal: true,
  pauseResume: true,
  updateResources: true,
  streamingIo: true,
  // The VM outlives kuasard, but nothing reconnects to its agent yet: a restarted kuasard ends
  // the pod's VM and reports its containers ended.
  restart: { containers: false, execs: false, stdio: false },
};
