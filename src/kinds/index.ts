// The registry of sandbox kinds: the one place that knows which kinds exist and how each is
// built from the daemon's configuration.
import { join } from 'node:path';
import type { Config, KindName } from '../config/config.js';
import type { SandboxKind } from '../core/kind.js';
import type { Reaper } from '../linux/reaper.js';
import { RuncKind } from './runc/index.js';
import { WasmKind } from './wasm/index.js';

export interface KindDependencies {
  reaper: Reaper;
}

export function createKind(name: KindName, config: Config, deps: KindDependencies): SandboxKind {
  switch (name) {
    case 'runc':
      return new RuncKind({ kindDir: join(config.state_dir, name), ociRuntime: config.kinds.runc.oci_runtime, reaper: deps.reaper });
    case 'wasm':
      return new WasmKind({
        kindDir: join(config.state_dir, name),
        defaultMemoryLimit: config.kinds.wasm.default_memory_limit,
        warmWorkers: config.kinds.wasm.warm_workers,
      });
  }
}
