// The registry of sandbox kinds: the one list of the kinds that exist. Adding a kind is a folder
// src/kinds/<name>/ with its registration.ts, and one line here (docs/architecture.md, "How to
// add a kind"). The configuration, the daemon, the devenv, the demo and the benchmark all read
// their kinds from this list.
import { join } from 'node:path';
import type { Config } from '../config/config.js';
import type { SandboxKind } from '../core/kind.js';
import type { Reaper } from '../linux/reaper.js';
import type { KindRegistration } from './registration.js';
import { runcKind } from './runc/registration.js';
import { wasmKind } from './wasm/registration.js';

/** Every kind, in the order the daemon serves them. */
export const KINDS = [runcKind, wasmKind] as const satisfies readonly KindRegistration[];

export type KindName = (typeof KINDS)[number]['name'];

export const KIND_NAMES: readonly KindName[] = KINDS.map((kind) => kind.name);

/** The registration of the kind named `name`, if there is such a kind. */
export function findKind(name: string): KindRegistration | undefined {
  return KINDS.find((kind) => kind.name === name);
}

export interface KindDependencies {
  reaper: Reaper;
}

/** Builds the kind `name` from its table of the configuration; this loads the kind's modules. */
export function createKind(name: KindName, config: Config, deps: KindDependencies): Promise<SandboxKind> {
  const kind = findKind(name) as KindRegistration;
  return kind.create(config.kinds[name], { kindDir: join(config.state_dir, name), reaper: deps.reaper });
}
