// `kuasar install` and `kuasar uninstall` (src/install/install.ts): kuasard into this node's
// containerd and systemd, and out again. The paths default to the node's own; the options move
// them (the tests run both commands against files in a directory of their own).
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { DEFAULT_INSTALL_PATHS, install, uninstall, type InstallPaths, type RunReport } from '../install/install.js';
import { KUASARD_ENTRY } from '../install/kuasard-node.js';

interface PathOptions {
  containerdConfig: string;
  config: string;
  systemdDir: string;
}

function withPathOptions(command: Command): Command {
  return command
    .option('--containerd-config <file>', "containerd's configuration (version 3)", DEFAULT_INSTALL_PATHS.containerdConfig)
    .option('-c, --config <file>', "kuasard's configuration", DEFAULT_INSTALL_PATHS.kuasardConfig)
    .option('--systemd-dir <dir>', 'where the kuasard.service unit goes', DEFAULT_INSTALL_PATHS.systemdDir);
}

const pathsOf = (opts: PathOptions): InstallPaths => ({
  containerdConfig: resolve(opts.containerdConfig),
  kuasardConfig: resolve(opts.config),
  systemdDir: resolve(opts.systemdDir),
});

function print(report: RunReport): void {
  const lines = [...report.lines, '', 'next, as root:', ...report.next.map((command) => `  ${command}`)];
  process.stdout.write(`${lines.join('\n')}\n`);
}

export function registerInstall(program: Command): void {
  withPathOptions(
    program
      .command('install')
      .description(
        "install kuasard on this node: its configuration if absent, its tables in containerd's configuration (a backup kept), and a systemd unit (root)",
      ),
  ).action(async (opts: PathOptions) => {
    print(await install(pathsOf(opts), { node: process.execPath, kuasard: KUASARD_ENTRY }));
  });

  withPathOptions(
    program
      .command('uninstall')
      .description(
        "give containerd's configuration back as it was before install and remove the unit; refused while kuasard holds pods (root)",
      ),
  )
    .option('--force', 'uninstall although kuasard holds pods (they keep running, out of containerd’s reach)')
    .action(async (opts: PathOptions & { force?: boolean }) => {
      print(await uninstall(pathsOf(opts), { force: opts.force === true }));
    });
}
