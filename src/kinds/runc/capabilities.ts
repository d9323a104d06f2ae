// What the runc kind supports, declared once: its registration shows it to the tests and tools,
// its kind object to the engine.
import type { KindCapabilities } from '../../kind-api/kind.js';

export const RUNC_CAPABILITIES: KindCapabilities = {
  exec: true,
  terminal: true,
  pauseResume: true,
  updateResources: true,
  streamingIo: true,
  // Containers are processes of their own and keep running; an exec's stdio (and a terminal's
  // or a stream's copy) lived in the daemon, so execs are reported ended.
  restart: { containers: true, execs: false, stdio: false },
};
