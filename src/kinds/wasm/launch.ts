// What a wasm container runs, from its OCI spec: the module (args[0], `path#function`), its
// arguments, environment and directories. The container's rootfs is the guest's `/`, and every
// directory bind mount of the spec appears at its destination; nothing else of the host does.
import { lstat, readlink, stat } from 'node:fs/promises';
import { posix } from 'node:path';
import { invalidArgument } from '../../core/errors.js';

/** The parts of an OCI runtime spec the wasm kind acts on. */
export interface WasmSpec {
  process?: { args?: string[]; env?: string[]; cwd?: string; terminal?: boolean };
  mounts?: { destination: string; type?: string; source?: string; options?: string[] }[];
  linux?: { resources?: { memory?: { limit?: number } } };
}

export interface WasmLaunch {
  modulePath: string;
  entry: string;
  args: string[];
  env: Record<string, string>;
  preopens: Record<string, string>;
  /** The spec's memory limit in bytes, if it has one. */
  memoryLimit: number | undefined;
}

const DEFAULT_ENTRY = '_start';

/** `path#function` -> its parts; a module path alone runs `_start`. */
export function parseModuleArg(arg: string): { path: string; entry: string } {
  const hash = arg.lastIndexOf('#');
  if (hash < 0) return { path: arg, entry: DEFAULT_ENTRY };
  const path = arg.slice(0, hash);
  const entry = arg.slice(hash + 1);
  if (!path || !entry) throw invalidArgument(`wasm module "${arg}": expected <path> or <path>#<function>`);
  return { path, entry };
}

/** `K=V` strings -> an object (a later duplicate wins, as for a process's environment). */
export function envObject(env: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of env) {
    const eq = entry.indexOf('=');
    if (eq > 0) out[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return out;
}

export async function wasmLaunch(spec: WasmSpec, rootfs: string): Promise<WasmLaunch> {
  const args = spec.process?.args ?? [];
  if (args.length === 0) throw invalidArgument('a wasm container needs args[0]: the module\'s path in its image');
  const { path, entry } = parseModuleArg(args[0]!);
  const cwd = spec.process?.cwd || '/';
  const modulePath = await insideRootfs(rootfs, posix.resolve(cwd, path), `wasm module ${path}`);
  const preopens: Record<string, string> = { '/': rootfs };
  for (const mount of spec.mounts ?? []) {
    if (!mount.source || !(mount.type === 'bind' || mount.options?.includes('bind') || mount.options?.includes('rbind'))) continue;
    // WASI preopens directories only: file binds (/etc/hosts, termination-log) are not seen.
    if (!(await stat(mount.source).catch(() => null))?.isDirectory()) continue;
    preopens[mount.destination] = mount.source;
  }
  const env = envObject(spec.process?.env ?? []);
  // WASI has no working directory of its own; wasi-libc resolves relative paths against `/`.
  env['PWD'] ??= cwd;
  const limit = spec.linux?.resources?.memory?.limit;
  return { modulePath, entry, args: [path, ...args.slice(1)], env, preopens, memoryLimit: limit && limit > 0 ? limit : undefined };
}

/** Symbolic links followed before a path is taken for a loop (Linux's own limit). */
const MAX_LINKS = 40;

/**
 * The host path of `guestPath` as the guest sees it: symbolic links are followed inside the
 * rootfs, an absolute target starting again at its top, and `..` never climbs above it.
 */
async function insideRootfs(rootfs: string, guestPath: string, what: string): Promise<string> {
  const pending = guestPath.split('/').filter(Boolean);
  const resolved: string[] = [];
  let links = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '.') continue;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const host = posix.join(rootfs, ...resolved, part);
    const info = await lstat(host).catch(() => null);
    if (!info) throw invalidArgument(`${what}: no such file in the container's image`);
    if (!info.isSymbolicLink()) {
      resolved.push(part);
      continue;
    }
    if (++links > MAX_LINKS) throw invalidArgument(`${what}: too many levels of symbolic links`);
    const target = await readlink(host);
    if (target.startsWith('/')) resolved.length = 0;
    pending.unshift(...target.split('/').filter(Boolean));
  }
  return posix.join(rootfs, ...resolved);
}
