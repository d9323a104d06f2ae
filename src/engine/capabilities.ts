// The one answer for what a kind does not support: Unimplemented, before the kind is asked.
import { unimplemented } from '../base/errors.js';
import type { Stdio } from '../base/model.js';
import type { KindCapabilities } from '../kind-api/kind.js';

type Feature = Exclude<keyof KindCapabilities, 'restart'>;

const FEATURE_NAMES: Record<Feature, string> = {
  exec: 'exec',
  terminal: 'a terminal',
  pauseResume: 'pause and resume',
  updateResources: 'changing the resources of a running container',
  streamingIo: 'streaming io',
};

/** Throws Unimplemented when the kind lacks `feature`. */
export function requireCapability(kind: { name: string; capabilities: KindCapabilities }, feature: Feature): void {
  if (!kind.capabilities[feature]) throw unimplemented(`${FEATURE_NAMES[feature]} is not supported by the ${kind.name} kind`);
}

/** Throws Unimplemented when the kind cannot serve stdio like `stdio` (a terminal, streams). */
export function requireStdioSupport(kind: { name: string; capabilities: KindCapabilities }, stdio: Stdio): void {
  if (stdio.terminal) requireCapability(kind, 'terminal');
  if ([stdio.stdin, stdio.stdout, stdio.stderr].some((endpoint) => endpoint.includes('://'))) requireCapability(kind, 'streamingIo');
}
