// What the wasm kind supports, declared once: its registration shows it to the tests and tools,
// its kind object to the engine.
import type { KindCapabilities } from '../../kind-api/kind.js';

export const WASM_CAPABILITIES: KindCapabilities = {
  exec: false,
  terminal: false,
  pauseResume: false,
  updateResources: false,
  streamingIo: true,
  // Instances run on kuasard's own threads: none outlives it.
  restart: { containers: false, execs: false, stdio: false },
};
