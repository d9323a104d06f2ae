// kuasard's configuration: a TOML file checked against a schema at start-up. An unknown key or a
// bad value stops the daemon with a message that names the key, instead of being ignored.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import * as check from '../base/schema.js';
import { invalidArgument } from '../base/errors.js';
import { KIND_NAMES, KINDS, type KindName } from '../kinds/index.js';
import type { KindRegistration } from '../kind-api/registration.js';
import { absolutePath, type KindEnabled } from './kind-schema.js';
import { parseMetricsAddress } from './metrics-address.js';

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;

type Kind = (typeof KINDS)[number];

/** `[kinds]`: one table per registered kind, each checked by the kind's own schema; a missing table takes its defaults. */
const kindTables = check.strictObject(
  Object.fromEntries((KINDS as readonly KindRegistration[]).map((kind) => [kind.name, kind.config.orDefaults()])) as {
    [K in Kind as K['name']]: check.Schema<check.Infer<K['config']>>;
  },
);

const configSchema = check.strictObject({
  // Its length is checked with the socket paths below it (src/doctor/socket-paths.ts): a failed
  // check, with its fix, in `kuasar doctor` and at kuasard's start.
  state_dir: absolutePath.default('/run/kuasar'),
  log_level: check.oneOf(LOG_LEVELS).default('info'),
  /** Where Prometheus metrics are served (src/config/metrics-address.ts); absent: not served. */
  metrics_address: check.string().transform(parseMetricsAddress).optional(),
  /**
   * kuasard's admin socket, which `kuasar ps`, `inspect` and `exec` ask (mode 0600: root's only);
   * absent: <state_dir>/admin.sock (adminSocketPath).
   */
  admin_socket: absolutePath.optional(),
  containerd: check
    .strictObject({
      /** containerd's ttrpc socket, where task events are forwarded. */
      ttrpc_address: absolutePath.default('/run/containerd/containerd.sock.ttrpc'),
    })
    .orDefaults(),
  kinds: kindTables.orDefaults(),
});

export type Config = check.Infer<typeof configSchema>;

/** Validates a parsed TOML document; errors name every bad key. */
export function parseConfig(doc: unknown): Config {
  const result = configSchema.safeParse(doc);
  if (!result.success) {
    throw invalidArgument(`invalid configuration: ${result.issues.map((issue) => check.describeIssue(issue)).join('; ')}`);
  }
  return result.data;
}

export async function loadConfig(path: string | undefined): Promise<Config> {
  if (!path) return parseConfig({});
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw invalidArgument(`cannot read configuration ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseToml(text);
  } catch (err) {
    throw invalidArgument(`configuration ${path} is not valid TOML: ${(err as Error).message}`);
  }
  return parseConfig(doc);
}

/** Where the sandbox controller of kind `name` listens: its `listen`, else <state_dir>/<name>.sock. */
export function controllerSocketPath(config: Config, name: KindName): string {
  return config.kinds[name].listen ?? join(config.state_dir, `${name}.sock`);
}

/** Where kuasard's admin socket listens: `admin_socket`, else <state_dir>/admin.sock. */
export function adminSocketPath(config: Config): string {
  return config.admin_socket ?? join(config.state_dir, 'admin.sock');
}

/**
 * The kinds this daemon may serve (enabled "auto" or true: kuasard's checks at start decide), in a
 * fixed order, with their controller socket resolved. containerd registers a handler for each.
 */
export function enabledKinds(config: Config, only?: string): { name: KindName; enabled: KindEnabled; listen: string; ioType: string }[] {
  if (only !== undefined && !(KIND_NAMES as readonly string[]).includes(only)) {
    throw invalidArgument(`unknown kind "${only}": known kinds are ${KIND_NAMES.join(', ')}`);
  }
  return KIND_NAMES.filter((name) => config.kinds[name].enabled !== false && (only === undefined || only === name)).map((name) => ({
    name,
    enabled: config.kinds[name].enabled,
    listen: controllerSocketPath(config, name),
    ioType: config.kinds[name].io_type,
  }));
}
