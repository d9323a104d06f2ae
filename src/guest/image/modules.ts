// The kernel modules the initramfs loads: which files, in which order. Dependencies come from the
// modules themselves (`modinfo -F depends`), because the Debian package ships no modules.dep
// (depmod writes it when the package is installed, and we never install it).
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { runTool } from './tools.js';

/**
 * The modules the guest needs: virtio over PCI, the root disk (virtio_blk) and its filesystem
 * (squashfs), the agent's port (virtio_console), the pod's shared directory (9p over virtio) and
 * the pod network (virtio_net). Their dependencies are added by {@link moduleLoadOrder}.
 */
export const GUEST_MODULES = ['virtio_pci', 'virtio_blk', 'squashfs', 'virtio_console', '9pnet_virtio', '9p', 'virtio_net'] as const;

/** Module names as the kernel compares them: `-` and `_` are the same. */
export const normalizeModuleName = (name: string): string => name.replaceAll('-', '_');

/**
 * `requested` and everything they depend on, each after its dependencies (the order insmod
 * needs), each once. `dependsOf` gives a module's direct dependencies; a module it does not know
 * is an error, and so is a cycle.
 */
export function moduleLoadOrder(requested: readonly string[], dependsOf: (name: string) => readonly string[]): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, path: readonly string[]): void => {
    const seen = state.get(name);
    if (seen === 'done') return;
    if (seen === 'visiting') throw new Error(`kernel modules depend on each other in a cycle: ${[...path, name].join(' -> ')}`);
    state.set(name, 'visiting');
    for (const dep of dependsOf(name)) visit(normalizeModuleName(dep), [...path, name]);
    state.set(name, 'done');
    order.push(name);
  };
  for (const name of requested) visit(normalizeModuleName(name), []);
  return order;
}

/** A module file's direct dependencies, as its own .modinfo section names them. */
export async function modinfoDepends(file: string): Promise<string[]> {
  const out = (await runTool('modinfo', ['-F', 'depends', file])).trim();
  return out === '' ? [] : out.split(',').map(normalizeModuleName);
}

export interface ModuleTree {
  /** Module name -> its .ko file. */
  files: Map<string, string>;
  /** Modules compiled into the kernel: nothing to load. */
  builtin: Set<string>;
}

/** The loadable and built-in modules of `/lib/modules/<release>` (as extracted from the package). */
export async function readModuleTree(modulesDir: string): Promise<ModuleTree> {
  const files = new Map<string, string>();
  for (const entry of await readdir(join(modulesDir, 'kernel'), { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    if (entry.name.endsWith('.ko.xz') || entry.name.endsWith('.ko.zst'))
      throw new Error(`compressed kernel module ${entry.name}: this builder expects plain .ko files`);
    if (entry.name.endsWith('.ko')) files.set(normalizeModuleName(entry.name.slice(0, -3)), join(entry.parentPath, entry.name));
  }
  const builtinList = await readFile(join(modulesDir, 'modules.builtin'), 'utf8').catch(() => '');
  const builtin = new Set(
    builtinList
      .split('\n')
      .filter((line) => line.endsWith('.ko'))
      .map((line) => normalizeModuleName(basename(line, '.ko'))),
  );
  return { files, builtin };
}

/** The .ko files to load, in order, for `requested` and their dependencies; built-in ones are left out. */
export async function resolveModuleFiles(tree: ModuleTree, requested: readonly string[]): Promise<{ name: string; file: string }[]> {
  const depends = new Map<string, string[]>();
  const pending = [...requested.map(normalizeModuleName)];
  while (pending.length > 0) {
    const name = pending.pop()!;
    if (depends.has(name)) continue;
    const file = tree.files.get(name);
    if (!file) {
      if (!tree.builtin.has(name)) throw new Error(`kernel module ${name}: not in the kernel package`);
      depends.set(name, []);
      continue;
    }
    const deps = await modinfoDepends(file);
    depends.set(name, deps);
    pending.push(...deps);
  }
  return moduleLoadOrder(requested, (name) => depends.get(name) ?? [])
    .filter((name) => tree.files.has(name))
    .map((name) => ({ name, file: tree.files.get(name)! }));
}
