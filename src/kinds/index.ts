// The registry of sandbox kinds: the one list of the kinds that exist. Adding a kind is a folder
// src/kinds/<name>/ with its registration.ts, and one line here (docs/architecture.md, "How to
// add a kind"). The configuration, the daemon, the devenv, the demo and the benchmark all read
// their kinds from this list.
import type { KindConfig } from '../config/kind-schema.js';
import type { SandboxKind } from '../kind-api/kind.js';
import type { KindContext, KindRegistration } from '../kind-api/registration.js';
import { appkernelKind } from './appkernel/registration.js';
import { runcKind } from './runc/registration.js';
import { vmmKind } from './vmm/registration.js';
import { wasmKind } from './wasm/registration.js';

/** Every kind, in the order the daemon serves them. */
export const KINDS = [runcKind, wasmKind, appkernelKind, vmmKind] as const satisfies readonly KindRegistration[];

export type KindName = (typeof KINDS)[number]['name'];

export const KIND_NAMES: readonly KindName[] = KINDS.map((kind) => kind.name);

/** The registration of the kind named `name`, if there is such a kind. */
export function findKind(name: string): KindRegistration | undefined {
  return KINDS.find((kind) => kind.name === name);
}

/** Builds the kind `name` from its table of the configuration; this loads the kind's modules. */
export function createKind(name: KindName, table: KindConfig, context: KindContext): Promise<SandboxKind> {
  const kind = findKind(name) as KindRegistration;
  return kind.create(table, context);
}
