// The wasm kind: WASI modules run inside kuasard, many instances on each of a few worker threads.
import * as check from '../../base/schema.js';
import { absolutePath, kindConfigSchema } from '../../config/kind-schema.js';
import { WASM_CAPABILITIES } from './capabilities.js';
import { defineKind } from '../../kind-api/registration.js';

/** The devenv's image of test modules: /<name>.wasm for every test/fixtures/wasm/<name>.wat. */
const TEST_MODULES = 'wasm-tests';

export const wasmKind = defineKind({
  name: 'wasm',
  capabilities: WASM_CAPABILITIES,
  config: kindConfigSchema.extend({
    /**
     * The most linear memory (bytes) of a module whose container has no memory limit: instances
     * live in kuasard's own process, so none may grow without bound. Default 256 MiB.
     */
    default_memory_limit: check
      .number()
      .int()
      .min(65_536)
      .default(256 * 1024 * 1024),
    /**
     * Worker threads that run the instances, many each, taking turns (each thread about 7 MiB).
     * They are started by the first wasm container and each ends when it hosted none for 30 s.
     */
    warm_workers: check.number().int().min(1).max(64).default(2),
    /**
     * Where the suspendable form of each module (rewrite.ts) is kept, by the digest of the module:
     * made once, the first time a module is run, and found again by later daemons.
     */
    module_cache_dir: absolutePath.default('/var/cache/kuasar/wasm'),
  }),
  async create(config, { kindDir }) {
    const { WasmKind } = await import('./kind.js');
    return new WasmKind({
      kindDir,
      defaultMemoryLimit: config.default_memory_limit,
      workerThreads: config.warm_workers,
      moduleCacheDir: config.module_cache_dir,
    });
  },
  async checks(_config, context) {
    const { wasmChecks } = await import('./checks.js');
    return wasmChecks(context);
  },
  workloads: {
    hello: { image: TEST_MODULES, command: ['/hello.wasm', 'greetings from a WebAssembly module'] },
    // Sleeps a second at a time through WASI's poll_oneoff (test/fixtures/wasm/sleep.wat), so
    // that wasm pods measure the runtime, not a loaded machine.
    idle: { image: TEST_MODULES, command: ['/sleep.wasm'], summary: "`/sleep.wasm` (a module that sleeps through WASI's poll_oneoff)" },
  },
  bench: {
    inKuasard: {
      each: 'many per thread',
      memory: 'its instance on a shared thread, its linear memory and compiled module',
      taskRate: { image: TEST_MODULES, longRunning: ['/sleep.wasm'], shortLived: ['/hello.wasm'] },
    },
  },
});
