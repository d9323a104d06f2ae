// What `kuasar doctor` checks of containerd: its version (the sandbox API's proxy plugins came
// with 2.0), and whether its configuration registers each kind: the proxy plugin kuasar-<kind>
// at the kind's controller socket and the CRI handler of the same name that uses it (what
// `kuasar config containerd` prints). kuasard does not run these: containerd may start after it,
// from a configuration kuasard does not know.
import { readFile } from 'node:fs/promises';
import { parse as parseToml } from 'smol-toml';
import { sandboxerName } from '../config/containerd.js';
import { type CheckResult, fail, findExecutable, ok, runForCheck, skipped, warn } from '../kind-api/checks.js';

export const DEFAULT_CONTAINERD_CONFIG = '/etc/containerd/config.toml';
const CRI_RUNTIME_PLUGIN = 'io.containerd.cri.v1.runtime';
const VERSION_TIMEOUT_MS = 5_000;
const REGISTER_FIX = 'add what `kuasar config containerd` prints to it and restart containerd';

export async function containerdVersionCheck(): Promise<CheckResult> {
  const name = 'containerd';
  const binary = await findExecutable('containerd');
  if (!binary) return fail(name, 'containerd: not found on PATH', 'install containerd 2.x');
  const answer = await runForCheck(binary, ['--version'], VERSION_TIMEOUT_MS);
  const version = /\b(\d+)\.(\d+)\.(\d+)\S*/.exec(answer.stdout);
  if (!answer.ok || !version) return fail(name, `${binary} --version: ${answer.why || answer.stdout.trim()}`, 'reinstall containerd 2.x');
  if (Number(version[1]) < 2)
    return fail(name, `containerd ${version[0]}: sandbox controllers need containerd 2.0 or later`, 'install containerd 2.x');
  return ok(name, `${version[0]} (${binary})`);
}

type Table = Record<string, unknown>;
const table = (value: unknown): Table | undefined =>
  typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Table) : undefined;

/** containerd's configuration as read: what the checks ask of it. */
export interface ContainerdConfig {
  path: string;
  /** Why it could not be read or parsed; the rest is then empty. */
  error?: string;
  version?: number;
  doc: Table;
}

export async function readContainerdConfig(path: string): Promise<ContainerdConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    return { path, error: `cannot read it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, doc: {} };
  }
  try {
    const doc = parseToml(text) as Table;
    return { path, version: typeof doc['version'] === 'number' ? doc['version'] : 1, doc };
  } catch (err) {
    return { path, error: `not valid TOML: ${(err as Error).message.split('\n')[0]}`, doc: {} };
  }
}

const criRuntime = (config: ContainerdConfig): Table | undefined => table(table(config.doc['plugins'])?.[CRI_RUNTIME_PLUGIN]);

/** What containerd's CRI does with negative oom_score_adj values pods ask for, when its configuration is known. */
export function restrictsOomScoreAdj(config: ContainerdConfig): boolean | undefined {
  if (config.error) return undefined;
  return criRuntime(config)?.['restrict_oom_score_adj'] === true;
}

export function containerdConfigCheck(config: ContainerdConfig): CheckResult {
  const name = 'containerd config';
  if (config.error) return warn(name, `${config.path}: ${config.error}`, `give its path with --containerd-config, or ${REGISTER_FIX}`);
  if (config.version !== 3) {
    return warn(
      name,
      `${config.path} is a version ${config.version} configuration: kuasar's tables are version 3`,
      'migrate it (containerd config migrate > new.toml, check it, put it in place), then register kuasar',
    );
  }
  return ok(name, `${config.path}, version 3`);
}

/** Whether containerd's configuration registers kind `kind`, its controller listening at `listen`. */
export function criHandlerCheck(config: ContainerdConfig, kind: string, listen: string): CheckResult {
  const name = 'cri handler';
  const handler = sandboxerName(kind);
  if (config.error || config.version !== 3) return skipped(name, `${handler}: see the host's containerd config check`);
  const plugin = table(table(config.doc['proxy_plugins'])?.[handler]);
  const runtime = table(table(table(criRuntime(config)?.['containerd'])?.['runtimes'])?.[handler]);
  const problems: string[] = [];
  if (!plugin) problems.push(`no [proxy_plugins.'${handler}']`);
  else if (plugin['type'] !== 'sandbox' || plugin['address'] !== listen) {
    problems.push(
      `[proxy_plugins.'${handler}'] is not type "sandbox" at ${listen} (type ${JSON.stringify(plugin['type'])}, address ${JSON.stringify(plugin['address'])})`,
    );
  }
  if (!runtime) problems.push(`no CRI runtime '${handler}'`);
  else if (runtime['sandboxer'] !== handler)
    problems.push(`CRI runtime '${handler}' has sandboxer ${JSON.stringify(runtime['sandboxer'])}, not "${handler}"`);
  if (problems.length > 0) return warn(name, `${config.path}: ${problems.join('; ')}`, REGISTER_FIX);
  return ok(name, `${handler}, registered in ${config.path}`);
}
