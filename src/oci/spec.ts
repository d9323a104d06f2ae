// The parts of the OCI runtime spec (config.json) this project reads or rewrites, and pure
// transforms over it. Fields we only pass through are typed loosely (unknown); a spec from
// containerd keeps every field it had, whether typed here or not. Transforms never mutate their
// input: each returns a new spec that shares the untouched parts.

import path from 'node:path';

import { invalidArgument } from '../base/errors.js';

export interface Spec {
  ociVersion: string;
  process?: Process;
  root?: Root;
  hostname?: string;
  domainname?: string;
  mounts?: Mount[];
  hooks?: Record<string, unknown>;
  annotations?: Record<string, string>;
  linux?: Linux;
  [field: string]: unknown;
}

export interface Process {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user: { uid: number; gid: number; umask?: number; additionalGids?: number[]; username?: string };
  args?: string[];
  commandLine?: string;
  env?: string[];
  cwd: string;
  capabilities?: Partial<Record<'bounding' | 'effective' | 'inheritable' | 'permitted' | 'ambient', string[]>>;
  rlimits?: { type: string; hard: number; soft: number }[];
  noNewPrivileges?: boolean;
  apparmorProfile?: string;
  oomScoreAdj?: number;
  selinuxLabel?: string;
  [field: string]: unknown;
}

export interface Root {
  path: string;
  readonly?: boolean;
}

export interface Mount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
  [field: string]: unknown;
}

export type LinuxNamespaceType = 'pid' | 'network' | 'mount' | 'ipc' | 'uts' | 'user' | 'cgroup' | 'time';

export interface LinuxNamespace {
  type: LinuxNamespaceType;
  /** Join the namespace at this path (e.g. a pinned nsfs file) instead of creating one. */
  path?: string;
}

export interface LinuxResources {
  memory?: { limit?: number; reservation?: number; swap?: number; kernel?: number; swappiness?: number; disableOOMKiller?: boolean };
  cpu?: {
    shares?: number;
    quota?: number;
    period?: number;
    realtimeRuntime?: number;
    realtimePeriod?: number;
    cpus?: string;
    mems?: string;
  };
  pids?: { limit: number };
  devices?: unknown[];
  blockIO?: unknown;
  hugepageLimits?: unknown[];
  network?: unknown;
  rdma?: unknown;
  unified?: Record<string, string>;
  [field: string]: unknown;
}

export interface Linux {
  namespaces?: LinuxNamespace[];
  uidMappings?: unknown[];
  gidMappings?: unknown[];
  devices?: unknown[];
  cgroupsPath?: string;
  resources?: LinuxResources;
  rootfsPropagation?: string;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  mountLabel?: string;
  seccomp?: unknown;
  sysctl?: Record<string, string>;
  [field: string]: unknown;
}

function withNamespaces(spec: Spec, edit: (namespaces: LinuxNamespace[]) => LinuxNamespace[]): Spec {
  return { ...spec, linux: { ...spec.linux, namespaces: edit(spec.linux?.namespaces ?? []) } };
}

/** The spec with `type` joined from `nsPath` (replacing a new or other namespace of that type). */
export function withNamespacePath(spec: Spec, type: LinuxNamespaceType, nsPath: string): Spec {
  if (!path.isAbsolute(nsPath)) throw invalidArgument(`${type} namespace path must be absolute: ${nsPath}`);
  return withNamespaces(spec, (namespaces) => upsertBy(namespaces, (ns) => ns.type === type, { type, path: nsPath }));
}

/** The spec with the container sharing the runtime's (host's) namespace of `type`. */
export function withoutNamespace(spec: Spec, type: LinuxNamespaceType): Spec {
  return withNamespaces(spec, (namespaces) => namespaces.filter((ns) => ns.type !== type));
}

/** The spec with a fresh namespace of `type` (dropping any path it was to join). */
export function withNewNamespace(spec: Spec, type: LinuxNamespaceType): Spec {
  return withNamespaces(spec, (namespaces) => upsertBy(namespaces, (ns) => ns.type === type, { type }));
}

/** Options that make a mount a bind mount whatever its type says (mount(8) reads them so). */
export const BIND_OPTIONS: readonly string[] = ['bind', 'rbind'];

/** True when `m` binds a host path (type "bind", or a bind option). */
export const isBindMount = (m: Pick<Mount, 'type' | 'options'>): boolean =>
  m.type === 'bind' || (m.options ?? []).some((o) => BIND_OPTIONS.includes(o));

/** The first mount at `destination`, if the spec has one. */
export function mountAt(spec: Spec, destination: string): Mount | undefined {
  return spec.mounts?.find(sameDestination(destination));
}

const sameDestination = (destination: string) => {
  const wanted = normalizeDestination(destination);
  return (m: Mount): boolean => normalizeDestination(m.destination) === wanted;
};

function normalizeDestination(destination: string): string {
  const normalized = path.posix.normalize(destination);
  return normalized.length > 1 ? normalized.replace(/\/+$/, '') : normalized;
}

/**
 * Replaces the first mount at `mount.destination` in place (keeping mount order, which matters:
 * later mounts land on top of earlier ones), drops other mounts at the same destination, and
 * appends the mount when there was none.
 */
export function upsertMount(spec: Spec, mount: Mount): Spec {
  return { ...spec, mounts: upsertBy(spec.mounts ?? [], sameDestination(mount.destination), mount) };
}

/** The spec with its root file system at `rootPath` (absolute, or relative to the bundle). */
export function withRootPath(spec: Spec, rootPath: string, readonly?: boolean): Spec {
  const root: Root = { path: rootPath };
  const keep = readonly ?? spec.root?.readonly;
  if (keep !== undefined) root.readonly = keep;
  return { ...spec, root };
}

/** Puts `item` where the first match was, removing the other matches; appends when none matched. */
function upsertBy<T>(items: readonly T[], matches: (item: T) => boolean, item: T): T[] {
  const index = items.findIndex(matches);
  if (index < 0) return [...items, item];
  return items.flatMap((existing, i) => (i === index ? [item] : matches(existing) ? [] : [existing]));
}

/** The spec's cgroups path; without one, runc's default: the container id below the runtime's own cgroup. */
export function cgroupsPathOf(spec: Spec, containerId: string): string {
  const path = spec.linux?.cgroupsPath;
  return typeof path === 'string' && path !== '' ? path : containerId;
}
