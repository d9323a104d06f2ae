// The part of containerd's configuration (version 3) that registers kuasard: one proxy sandbox
// plugin per enabled kind and one CRI runtime handler `kuasar-<kind>` that uses it.
import type { Config } from './config.js';
import { enabledKinds } from './config.js';

export const sandboxerName = (kind: string): string => `kuasar-${kind}`;

/** The containerd plugin whose `containerd.runtimes` table holds CRI's runtime handlers. */
export const CRI_RUNTIME_PLUGIN = 'io.containerd.cri.v1.runtime';

export function containerdConfigSnippet(config: Config): string {
  const lines: string[] = [];
  for (const kind of enabledKinds(config)) {
    const name = sandboxerName(kind.name);
    lines.push(
      `[proxy_plugins.'${name}']`,
      `  type = "sandbox"`,
      `  address = ${JSON.stringify(kind.listen)}`,
      '',
      `[plugins.'${CRI_RUNTIME_PLUGIN}'.containerd.runtimes.'${name}']`,
      // containerd still maps a runtime type to a shim binary after its own restart; runc's
      // shim exists on every node that has containerd, so cleanup calls find a binary.
      `  runtime_type = "io.containerd.runc.v2"`,
      `  sandboxer = "${name}"`,
      `  io_type = "${kind.ioType === 'streaming' ? 'streaming' : ''}"`,
      '',
    );
  }
  return lines.join('\n');
}
