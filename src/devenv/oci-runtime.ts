// The OCI runtime a devenv's kuasard chose for the runc kind (src/kinds/runc/runtime-choice.ts),
// as a command: for tests that act on a container behind kuasard's back, with the runtime that
// holds it (runc cannot read crun's state, nor crun runc's).
import { readFileSync } from 'node:fs';
import { runcLikeProfile } from '../oci/profiles.js';

/** The runtime's command from kuasard's log (its `OCI runtime` record), launcher first; runc when the log names none. */
export function runcKindRuntimeCommand(kuasardLog: string): string[] {
  let binary = 'runc';
  for (const line of readFileSync(kuasardLog, 'utf8').split('\n')) {
    if (!line.includes('"OCI runtime: ')) continue;
    const record = JSON.parse(line) as { binary?: unknown };
    if (typeof record.binary === 'string') binary = record.binary;
  }
  return [...(runcLikeProfile(binary).launcher ?? []), binary];
}
