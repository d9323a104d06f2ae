#!/usr/bin/env node
// kuasard: the resident sandboxer daemon. Containers it starts keep running when it exits.
import { Command } from 'commander';
import { loadConfig } from '../config/config.js';
import { startDaemon } from '../daemon/daemon.js';
import { createLogger } from '../base/log.js';

/** How long a shutdown may take before the process exits regardless (its own steps are bounded). */
const EXIT_DEADLINE_MS = 10_000;

const program = new Command('kuasard')
  .description('kuasar-ts sandboxer daemon: containerd sandbox controller and Task API for every enabled kind')
  .option('-c, --config <file>', 'configuration file (TOML)', process.env.KUASAR_CONFIG)
  .option('--kind <kind>', 'serve only this kind (one daemon per kind)')
  .option('--log-level <level>', 'override log_level from the configuration')
  .parse();

const opts = program.opts<{ config?: string; kind?: string; logLevel?: string }>();

try {
  const config = await loadConfig(opts.config);
  const log = createLogger(opts.logLevel ?? config.log_level);
  const daemon = await startDaemon(config, log, opts.kind);
  log.info({ stateDir: config.state_dir, kinds: daemon.sandboxers.map((s) => s.kind.name) }, 'kuasard ready');
  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down; containers keep running');
    // A backstop: whatever close() may wait for, the daemon ends (and a later run takes over).
    setTimeout(() => {
      log.error({ afterMs: EXIT_DEADLINE_MS }, 'shutdown did not finish in time; exiting anyway');
      process.exit(1);
    }, EXIT_DEADLINE_MS).unref();
    daemon.close().then(
      () => {
        log.info('kuasard stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed; exiting anyway');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
} catch (err) {
  process.stderr.write(`kuasard: ${(err as Error).message}\n`);
  process.exit(1);
}
