// What a wasm container runs, from its OCI spec: the module (args[0], `path#function`), its
// arguments and environment, and the file system it sees. The container's rootfs is the guest's
// `/` (its only preopen), and every bind mount of the spec is bound at its destination inside
// that rootfs (guest-mounts.ts makes them); nothing else of the host is reachable.
import type { BigIntStats } from 'node:fs';
import { posix } from 'node:path';
import { invalidArgument } from '../../base/errors.js';
import { parseMountOptions } from '../../linux/mount.js';
import { BIND_OPTIONS, isBindMount } from '../../oci/spec.js';
import { findInRootfs } from './rootfs-path.js';

/** The parts of an OCI runtime spec the wasm kind acts on. */
export interface WasmSpec {
  process?: { args?: string[]; env?: string[]; cwd?: string; terminal?: boolean };
  root?: { readonly?: boolean };
  mounts?: { destination: string; type?: string; source?: string; options?: string[] }[];
  linux?: { resources?: { memory?: { limit?: number } } };
}

export interface WasmLaunch {
  modulePath: string;
  /** What lstat said of the module's file when its path was resolved (the module cache knows a file by it). */
  moduleStats: BigIntStats | undefined;
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
  if (args.length === 0) throw invalidArgument("a wasm container needs args[0]: the module's path in its image");
  const { path, entry } = parseModuleArg(args[0]!);
  const cwd = spec.process?.cwd || '/';
  const module = await findInRootfs(rootfs, posix.resolve(cwd, path), `wasm module ${path}`);
  const env = envObject(spec.process?.env ?? []);
  // WASI has no working directory of its own; wasi-libc resolves relative paths against `/`.
  env['PWD'] ??= cwd;
  const limit = spec.linux?.resources?.memory?.limit;
  return {
    modulePath: module.path,
    moduleStats: module.stats,
    entry,
    args: [path, ...args.slice(1)],
    env,
    preopens: { '/': rootfs },
    memoryLimit: limit && limit > 0 ? limit : undefined,
  };
}

/** A bind mount of the spec, as the guest sees it. */
export interface GuestMount {
  /** Where the guest sees it: an absolute, normalized path inside its `/` (never `/` itself). */
  destination: string;
  /** The host file or directory, absolute. */
  source: string;
  /** mount(8) words for the bind: the spec's own, with `bind` and a propagation made explicit. */
  options: string[];
}

export interface GuestFilesystem {
  /** In the spec's order: a mount may sit inside an earlier one. */
  mounts: GuestMount[];
  /** The spec's root.readonly: the guest's `/` refuses writes (its mounts keep their own mode). */
  readonlyRoot: boolean;
}

/**
 * The mounts the guest gets, from the spec. Only bind mounts mean something to a WebAssembly
 * module: it reaches files through WASI alone, so proc, sysfs, tmpfs (/dev, /dev/shm), devpts,
 * mqueue and cgroup mounts (CRI's defaults for a Linux process) would only expose the host's
 * kernel interfaces, and are left out. A bind keeps its options (`ro`, `rbind`, propagation...,
 * read as mount(8) reads them); one that names no propagation is made private, since a bind of
 * a shared mount would join its peer group and mounts made below it (a nested destination)
 * would appear on the host too. A relative source is relative to the bundle, as OCI says.
 */
export function guestFilesystem(spec: WasmSpec, bundle: string): GuestFilesystem {
  const mounts: GuestMount[] = [];
  for (const m of spec.mounts ?? []) {
    if (!isBindMount(m)) continue;
    const destination = posix.resolve('/', m.destination);
    if (destination === '/') throw invalidArgument(`bind mount of ${m.source ?? '(no source)'} at /: it would hide the container's rootfs`);
    if (!m.source) throw invalidArgument(`bind mount at ${m.destination}: it has no source`);
    const options = m.options ?? [];
    mounts.push({
      destination,
      source: posix.resolve(bundle, m.source),
      options: [
        // `"type": "bind"` alone says bind; mount(2) needs the flag.
        ...(options.some((o) => BIND_OPTIONS.includes(o)) ? [] : ['bind']),
        ...options,
        ...(parseMountOptions(options).propagation === 0 ? ['rprivate'] : []),
      ],
    });
  }
  return { mounts, readonlyRoot: spec.root?.readonly === true };
}
