// What a pod of each kind runs in the demo and the benchmarks, as the kind's registration says
// (src/kinds/<kind>/registration.ts), with the image's short name resolved to the local image.
import { findKind, KIND_NAMES } from '../kinds/index.js';
import type { KindRegistration, Workload } from '../kind-api/registration.js';
import { localImageRef } from './images.js';

function registration(kind: string): KindRegistration {
  const found = findKind(kind);
  if (!found) throw new Error(`no kind "${kind}" is registered (known kinds: ${KIND_NAMES.join(', ')})`);
  return found;
}

/** The workload with its image's short name replaced by the local image's reference, which CRI pulls. */
const local = ({ image, command }: Workload): Workload => ({ image: localImageRef(image), command: [...command] });

/** Prints a greeting and some facts about where it runs, then exits 0. */
export function helloWorkload(kind: string): Workload {
  return local(registration(kind).workloads.hello);
}

/** Runs until it is stopped, doing nothing. */
export function idleWorkload(kind: string): Workload {
  return local(registration(kind).workloads.idle);
}
