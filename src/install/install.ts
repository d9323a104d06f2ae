// `kuasar install` and `kuasar uninstall`: kuasard into a node's containerd and systemd. Install
// writes kuasard's configuration when there is none, puts kuasar's tables into containerd's
// configuration (containerd-config.ts) after keeping a backup of it, and writes the systemd unit
// (systemd-unit.ts). Every check runs before the first write, and a run that finds everything in
// place writes nothing, so install can be run again at will (the node installer does, at every
// start). Uninstall gives containerd's file back as it was and removes the unit; it refuses while
// kuasard holds pods, whose containers would lose their sandboxer.
import { existsSync, lstatSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { loadConfig, enabledKinds, type Config } from '../config/config.js';
import { containerdConfigSnippet, sandboxerName } from '../config/containerd.js';
import { writeFileAtomic, type FileOwnership } from '../base/state-file.js';
import { mergeConfig, splitConfig, ttrpcAddress } from './containerd-config.js';
import { defaultKuasardConfig } from './kuasard-config.js';
import { podsInStateDir } from './pods.js';
import { renderUnit, UNIT_MARKER, UNIT_NAME, WANTED_BY } from './systemd-unit.js';

export interface InstallPaths {
  /** containerd's configuration file (default /etc/containerd/config.toml). */
  containerdConfig: string;
  /** kuasard's configuration file (default /etc/kuasar/config.toml). */
  kuasardConfig: string;
  /** Where unit files go (default /etc/systemd/system). */
  systemdDir: string;
}

export const DEFAULT_INSTALL_PATHS: InstallPaths = {
  containerdConfig: '/etc/containerd/config.toml',
  kuasardConfig: '/etc/kuasar/config.toml',
  systemdDir: '/etc/systemd/system',
};

/** How the unit starts kuasard: this node binary and this build's kuasard.js. */
export interface KuasardProgram {
  node: string;
  kuasard: string;
}

/** containerd's configuration as it was before install, next to it. */
export const backupPath = (containerdConfig: string): string => `${containerdConfig}.kuasar-backup`;

const unitPath = (paths: InstallPaths): string => join(paths.systemdDir, UNIT_NAME);

/** What a run did, one line per file, then what the operator does next. */
export interface RunReport {
  lines: string[];
  next: string[];
}

export async function install(paths: InstallPaths, program: KuasardProgram): Promise<RunReport> {
  const lines: string[] = [];
  const containerdText = readContainerdConfig(paths.containerdConfig);
  const kuasard = await kuasardConfigFor(paths.kuasardConfig, () => ttrpcAddress(containerdText, paths.containerdConfig));
  const kinds = enabledKinds(kuasard.config);
  if (kinds.length === 0) throw new Error(`${paths.kuasardConfig} enables no kind: enable one under [kinds] first`);
  const merge = mergeConfig({
    current: containerdText,
    tables: containerdConfigSnippet(kuasard.config),
    names: kinds.map((kind) => sandboxerName(kind.name)),
    file: paths.containerdConfig,
  });
  const unitFile = unitPath(paths);
  const unit = renderUnit({ ...program, config: resolve(paths.kuasardConfig) });
  const unitNow = readIfExists(unitFile);
  if (unitNow !== undefined && !unitNow.startsWith(`${UNIT_MARKER}\n`)) {
    throw new Error(`${unitFile} exists and was not written by \`kuasar install\`: move it away, then run \`kuasar install\` again`);
  }

  if (kuasard.write !== undefined) {
    await mkdir(dirname(paths.kuasardConfig), { recursive: true, mode: 0o755 });
    await writeFileAtomic(paths.kuasardConfig, kuasard.write, { mode: 0o644 });
    lines.push(`wrote ${paths.kuasardConfig} (kuasard's configuration, defaults)`);
  } else {
    lines.push(`kept ${paths.kuasardConfig} as it is`);
  }
  const kindList = kinds.map((kind) => kind.name).join(', ');
  if (merge.changed) {
    if (merge.first) {
      await writeFileAtomic(backupPath(paths.containerdConfig), containerdText, ownershipOf(paths.containerdConfig));
      lines.push(`saved ${paths.containerdConfig} as it was in ${backupPath(paths.containerdConfig)}`);
    }
    await writeFileAtomic(paths.containerdConfig, merge.text, ownershipOf(paths.containerdConfig));
    lines.push(`${merge.first ? 'added' : 'updated'} kuasar's block in ${paths.containerdConfig} (kinds: ${kindList})`);
  } else {
    lines.push(`${paths.containerdConfig} has kuasar's block for ${kindList} already`);
  }
  if (unit !== unitNow) {
    await mkdir(paths.systemdDir, { recursive: true, mode: 0o755 });
    await writeFileAtomic(unitFile, unit, { mode: 0o644 });
    lines.push(`wrote ${unitFile}`);
  } else {
    lines.push(`${unitFile} is up to date`);
  }
  const next = [
    'systemctl daemon-reload',
    `systemctl enable ${UNIT_NAME}`,
    `systemctl restart ${UNIT_NAME}`,
    // containerd reads its configuration only when it starts.
    ...(merge.changed ? ['systemctl restart containerd.service'] : []),
  ];
  return { lines, next };
}

export interface UninstallOptions {
  /** Go ahead although kuasard holds pods (they keep running, unreachable through containerd). */
  force?: boolean;
}

export async function uninstall(paths: InstallPaths, { force = false }: UninstallOptions = {}): Promise<RunReport> {
  const lines: string[] = [];
  const config = existsSync(paths.kuasardConfig) ? await loadConfig(paths.kuasardConfig) : await loadConfig(undefined);
  const pods = podsInStateDir(config.state_dir);
  if (pods.length > 0) {
    const counts = new Map<string, number>();
    for (const pod of pods) counts.set(pod.kind, (counts.get(pod.kind) ?? 0) + 1);
    const byKind = [...counts].map(([kind, count]) => `${count} ${kind}`);
    const held = `kuasard holds ${pods.length} pod(s) in ${config.state_dir} (${byKind.join(', ')})`;
    if (!force) {
      throw new Error(
        `${held}: stop and remove them first (kubectl drain, or crictl stopp and rmp), or pass --force to uninstall anyway ` +
          '(their containers keep running, but containerd can no longer reach them)',
      );
    }
    lines.push(`${held}; going ahead (--force): their containers keep running without a sandboxer containerd knows`);
  }

  lines.push(await restoreContainerdConfig(paths.containerdConfig));
  const unitFile = unitPath(paths);
  const unitNow = readIfExists(unitFile);
  if (unitNow === undefined) {
    lines.push(`${unitFile} is not there`);
  } else if (!unitNow.startsWith(`${UNIT_MARKER}\n`)) {
    lines.push(`left ${unitFile}: \`kuasar install\` did not write it`);
  } else {
    // What `systemctl disable` would remove: the link of the unit's [Install] section.
    const wants = join(paths.systemdDir, `${WANTED_BY}.wants`, UNIT_NAME);
    if (isLinkTo(wants, unitFile)) rmSync(wants);
    await rm(unitFile);
    lines.push(`removed ${unitFile}`);
  }
  lines.push(`kept ${paths.kuasardConfig} (remove it by hand if kuasar is gone for good)`);
  return { lines, next: ['systemctl daemon-reload', `systemctl stop ${UNIT_NAME}`, 'systemctl restart containerd.service'] };
}

/** Takes kuasar's block out of containerd's file: its text before install, verified against the backup. */
async function restoreContainerdConfig(file: string): Promise<string> {
  const current = readIfExists(file);
  if (current === undefined) return `${file} is not there: nothing to take out`;
  const { own, block } = splitConfig(current, file);
  if (block === undefined) return `${file} has no kuasar block: nothing to take out`;
  const backup = backupPath(file);
  const saved = readIfExists(backup);
  await writeFileAtomic(file, own, ownershipOf(file));
  if (saved === own) {
    rmSync(backup);
    return `restored ${file} as it was before \`kuasar install\` (the same bytes as its backup, now removed)`;
  }
  return saved === undefined
    ? `took kuasar's block out of ${file} (no backup to compare it with)`
    : `took kuasar's block out of ${file}; it changed since \`kuasar install\`, so ${backup} (the file before install) is kept`;
}

function readContainerdConfig(file: string): string {
  const text = readIfExists(file);
  if (text === undefined) {
    throw new Error(
      `${file} does not exist: containerd runs on its built-in defaults, and kuasar adds to a file. ` +
        `Write the defaults out first (\`containerd config default > ${file}\`), then run \`kuasar install\` again`,
    );
  }
  return text;
}

/** kuasard's configuration: the file's when there is one, else the defaults install writes (`write`). */
async function kuasardConfigFor(file: string, ttrpc: () => string | undefined): Promise<{ config: Config; write?: string }> {
  if (existsSync(file)) return { config: await loadConfig(file) };
  const { text, config } = defaultKuasardConfig(ttrpc());
  return { config, write: text };
}

function readIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function isLinkTo(link: string, target: string): boolean {
  try {
    return lstatSync(link).isSymbolicLink() && resolve(dirname(link), readlinkSync(link)) === resolve(target);
  } catch {
    return false;
  }
}

/** A file's mode and owner as they are now, for the file written in its place. */
function ownershipOf(path: string): FileOwnership {
  const { mode, uid, gid } = statSync(path);
  return { mode: mode & 0o7777, owner: { uid, gid } };
}
