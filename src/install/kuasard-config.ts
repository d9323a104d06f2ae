// The kuasard configuration `kuasar install` writes when the node has none: the keys an operator
// most often looks for, each at its default except containerd's ttrpc socket, which is taken from
// containerd's own configuration so that task events reach the containerd that runs the pods.
import { stringify } from 'smol-toml';
import { parseConfig, type Config } from '../config/config.js';

const HEADER = `# kuasard's configuration, written by \`kuasar install\`, which never overwrites it (\`kuasar
# uninstall\` leaves it too). Every key is optional: README.md ("Configuration") lists them all.
# Kinds are turned on and off in [kinds.<name>] tables, e.g.
#   [kinds.wasm]
#   enabled = true
# then \`kuasar install\` registers them with containerd (restart containerd and kuasard after it).
`;

export interface DefaultConfig {
  text: string;
  config: Config;
}

/** The file's text and what kuasard will read from it. */
export function defaultKuasardConfig(containerdTtrpcAddress: string | undefined): DefaultConfig {
  const defaults = parseConfig({});
  const doc = {
    state_dir: defaults.state_dir,
    log_level: defaults.log_level,
    containerd: { ttrpc_address: containerdTtrpcAddress ?? defaults.containerd.ttrpc_address },
  };
  const text = `${HEADER}\n${stringify(doc)}\n`;
  return { text, config: parseConfig(doc) };
}
