// What the appkernel kind supports, declared once: its registration shows it to the tests and
// tools, its kind object to the engine.
import type { KindCapabilities } from '../../kind-api/kind.js';

export const APPKERNEL_CAPABILITIES: KindCapabilities = {
  exec: true,
  terminal: true,
  // runsc's pause stops the sandbox's whole kernel: every container of the pod (an exec into
  // another one hangs until the resume), while runsc still says they run.
  pauseResume: false,
  // runsc has no `update`: a container's resources are fixed at its creation.
  updateResources: false,
  streamingIo: true,
  // The gVisor sandbox outlives kuasard and keeps its containers' exit statuses (runsc wait
  // tells them); an exec's stdio lived in the daemon, so execs are reported ended.
  restart: { containers: true, execs: false, stdio: false },
};
