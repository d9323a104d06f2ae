// kuasard's configuration: a TOML file checked against a schema at start-up. An unknown key or a
// bad value stops the daemon with a message that names the key, instead of being ignored.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { invalidArgument } from '../base/errors.js';
import { MAX_SOCKET_PATH, TASK_SOCKET_NAME } from '../daemon/task-socket.js';
import { KIND_NAMES, KINDS, type KindName } from '../kinds/index.js';
import { MAX_KIND_NAME_LENGTH, type KindRegistration } from '../kind-api/registration.js';
import { absolutePath } from './kind-schema.js';

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;

// A unix socket path is limited to 107 bytes; a sandbox's task socket is
// <state_dir>/<kind>/<sandbox id>/task.sock, and CRI's sandbox ids have 64 characters.
const MAX_STATE_DIR_LENGTH = MAX_SOCKET_PATH - `/${'k'.repeat(MAX_KIND_NAME_LENGTH)}/`.length - 64 - `/${TASK_SOCKET_NAME}`.length;

type Kind = (typeof KINDS)[number];

/** `[kinds]`: one table per registered kind, each checked by the kind's own schema; a missing table takes its defaults. */
const kindTables = z.strictObject(
  Object.fromEntries((KINDS as readonly KindRegistration[]).map((kind) => [kind.name, kind.config.prefault({})])) as {
    [K in Kind as K['name']]: z.ZodPrefault<K['config']>;
  },
);

const configSchema = z.strictObject({
  state_dir: absolutePath
    .refine((p) => p.length <= MAX_STATE_DIR_LENGTH, `must be at most ${MAX_STATE_DIR_LENGTH} characters (task sockets live below it)`)
    .default('/run/kuasar'),
  log_level: z.enum(LOG_LEVELS).default('info'),
  containerd: z
    .strictObject({
      /** containerd's ttrpc socket, where task events are forwarded. */
      ttrpc_address: absolutePath.default('/run/containerd/containerd.sock.ttrpc'),
    })
    .prefault({}),
  kinds: kindTables.prefault({}),
});

export type Config = z.infer<typeof configSchema>;

/** Validates a parsed TOML document; errors name every bad key. */
export function parseConfig(doc: unknown): Config {
  const result = configSchema.safeParse(doc);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      const key = issue.path.join('.') || '(top level)';
      return `${key}: ${issue.message}`;
    });
    throw invalidArgument(`invalid configuration: ${problems.join('; ')}`);
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

/** The kinds this daemon serves, in a fixed order, with their controller socket resolved. */
export function enabledKinds(config: Config, only?: string): { name: KindName; listen: string; ioType: string }[] {
  if (only !== undefined && !(KIND_NAMES as readonly string[]).includes(only)) {
    throw invalidArgument(`unknown kind "${only}": known kinds are ${KIND_NAMES.join(', ')}`);
  }
  return KIND_NAMES.filter((name) => config.kinds[name].enabled && (only === undefined || only === name)).map((name) => ({
    name,
    listen: config.kinds[name].listen ?? join(config.state_dir, `${name}.sock`),
    ioType: config.kinds[name].io_type,
  }));
}
