// kuasard's configuration: a TOML file checked against a schema at start-up. An unknown key or a
// bad value stops the daemon with a message that names the key, instead of being ignored.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { invalidArgument } from '../core/errors.js';
import { MAX_SOCKET_PATH, TASK_SOCKET_NAME } from '../core/sandbox.js';

export const KIND_NAMES = ['runc', 'wasm'] as const;
export type KindName = (typeof KIND_NAMES)[number];

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;

// A unix socket path is limited to 107 bytes; a sandbox's task socket is
// <state_dir>/<kind>/<sandbox id>/task.sock, and CRI's sandbox ids have 64 characters.
const MAX_STATE_DIR_LENGTH = MAX_SOCKET_PATH - '/appkernel/'.length - 64 - `/${TASK_SOCKET_NAME}`.length;

const absolutePath = z.string().refine((p) => p.startsWith('/'), 'must be an absolute path');

const kindSchema = z.strictObject({
  enabled: z.boolean().default(true),
  /** The gRPC socket of this kind's sandbox controller (containerd's proxy plugin address). */
  listen: absolutePath.optional(),
  /** containerd's io_type for the CRI handler: "fifo" (default) or "streaming". */
  io_type: z.enum(['fifo', 'streaming']).default('fifo'),
});

const runcKindSchema = kindSchema.extend({
  /** The OCI runtime CLI: a name on PATH or an absolute path (runc, crun). */
  oci_runtime: z.string().min(1).default('runc'),
});

/** The wasm kind is opt-in: a daemon serves it only when its configuration enables it. */
const wasmKindSchema = kindSchema.extend({
  enabled: z.boolean().default(false),
  /**
   * The most linear memory (bytes) of a module whose container has no memory limit: instances
   * live in kuasard's own process, so none may grow without bound. Default 256 MiB.
   */
  default_memory_limit: z.number().int().min(65_536).default(256 * 1024 * 1024),
  /**
   * Worker threads kept started and idle for the next containers (each about 7 MiB): a
   * container that finds one ready does not wait the tens of milliseconds a thread takes to start.
   */
  warm_workers: z.number().int().min(0).max(64).default(2),
});

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
  kinds: z
    .strictObject({
      runc: runcKindSchema.prefault({}),
      wasm: wasmKindSchema.prefault({}),
    })
    .prefault({}),
});

export type Config = z.infer<typeof configSchema>;
export type KindConfig = z.infer<typeof kindSchema>;

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
