// One reading of an OCI bundle as containerd hands it over in Task Create: the directory holding
// config.json, and the rootfs, which is either mounts for us to make (Task Create's rootfs list)
// or, when that list is empty, a directory containerd prepared itself (config.json's root.path).

import { readFileSync } from 'node:fs';
import path from 'node:path';

import { failedPrecondition, internal, invalidArgument } from '../base/errors.js';
import type { Spec } from './spec.js';

/** Where containerd's shims mount the rootfs, and the root.path containerd writes: `<bundle>/rootfs`. */
export const DEFAULT_ROOTFS = 'rootfs';

/**
 * The bundle's config.json. A missing file is FailedPrecondition, one that is no JSON object InvalidArgument.
 * Read synchronously: a few KiB in containerd's state directory (by default a tmpfs), a read of tens of
 * microseconds, where readFile's four thread-pool round trips (open, fstat, read, close) each
 * waited behind the pool's other work: 6 ms per Task Create at 250 creates per second.
 */
export async function readBundleSpec<S extends Spec = Spec>(bundleDir: string): Promise<S> {
  const file = path.join(bundleDir, 'config.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw failedPrecondition(`bundle ${bundleDir}: no config.json`);
    throw internal(`bundle ${bundleDir}: reading config.json: ${(err as Error).message}`, err);
  }
  let spec: unknown;
  try {
    spec = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`bundle ${bundleDir}: config.json is not JSON: ${(err as Error).message}`);
  }
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
    throw invalidArgument(`bundle ${bundleDir}: config.json is not a JSON object`);
  }
  return spec as S;
}

/**
 * The directory that is the container's root. When containerd sent rootfs mounts (`mountCount`
 * > 0), it is where the caller mounts them, `mountPoint`. When it sent none, containerd prepared
 * the rootfs in the bundle itself: the spec's root.path, relative to the bundle or absolute.
 */
export function resolveRootfs(
  bundleDir: string,
  spec: Spec,
  mountCount: number,
  mountPoint = path.join(bundleDir, DEFAULT_ROOTFS),
): string {
  if (mountCount > 0) return mountPoint;
  // Typed, but read from a file: root may be anything.
  const root: unknown = spec.root;
  const rootPath = root === undefined || root === null ? DEFAULT_ROOTFS : (root as { path?: unknown }).path;
  if (typeof rootPath !== 'string' || rootPath === '') {
    throw invalidArgument(`bundle ${bundleDir}: config.json root.path must be a non-empty string`);
  }
  return path.resolve(bundleDir, rootPath);
}
