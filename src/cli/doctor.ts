// `kuasar doctor`: whether this host can run each kind, and why not, from real probes (a tiny
// container, a probe guest, a gVisor sandbox per platform); the host's own checks and
// containerd's. Exit status 1 when kuasard with the same configuration would refuse to start (a
// kind enabled = true cannot run, or no kind can).
import type { Command } from 'commander';
import { loadConfig } from '../config/config.js';
import { DEFAULT_CONTAINERD_CONFIG } from '../doctor/containerd-checks.js';

interface DoctorOptions {
  config?: string;
  containerdConfig: string;
  json?: boolean;
}

/** Adds `doctor`; the checks are loaded only when it runs. */
export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('check whether this host can run each kind, and why not (root)')
    .option('-c, --config <file>', 'kuasard configuration file (TOML)', process.env.KUASAR_CONFIG)
    .option('--containerd-config <file>', "containerd's configuration, checked for kuasar's handlers", DEFAULT_CONTAINERD_CONFIG)
    .option('--json', 'print the report as JSON')
    .action(async (opts: DoctorOptions) => {
      const config = await loadConfig(opts.config);
      const { runChecks, exitStatus } = await import('../doctor/run.js');
      const { formatReport, reportJson } = await import('../doctor/report.js');
      const report = await runChecks(config, { depth: 'doctor', containerdConfig: opts.containerdConfig });
      process.stdout.write(opts.json ? reportJson(report) : formatReport(report));
      process.exitCode = exitStatus(report);
    });
}
