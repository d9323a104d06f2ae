#!/usr/bin/env node
// kuasard: the resident sandboxer daemon. Containers it starts keep running when it exits.
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';
import { loadConfig } from '../config/config.js';
import { startDaemon } from '../daemon/daemon.js';
import { createLogger } from '../base/log.js';
import { SystemdNotifier } from '../linux/sd-notify.js';

/** How long a shutdown may take before the process exits regardless (its own steps are bounded). */
const EXIT_DEADLINE_MS = 10_000;

const USAGE = `Usage: kuasard [options]

kuasar-ts sandboxer daemon: containerd sandbox controller and Task API for every enabled kind

Options:
  -c, --config <file>    configuration file (TOML) (default: $KUASAR_CONFIG)
  --kind <kind>          serve only this kind (one daemon per kind)
  --log-level <level>    override log_level from the configuration
  -h, --help             display help for command
`;

const opts = parseOptions();

try {
  const config = await loadConfig(opts.config ?? process.env.KUASAR_CONFIG);
  const log = createLogger(opts.logLevel ?? config.log_level);
  // Read (and removed from the environment) before the daemon starts any process.
  const systemd = systemdNotifier(log);
  const daemon = await startDaemon(config, log, opts.kind);
  const kinds = daemon.sandboxers.map((s) => s.kind.name);
  log.info({ stateDir: config.state_dir, kinds }, 'kuasard ready');
  notifySystemd(log, () => systemd?.ready(`serving ${kinds.join(', ')}`));
  systemd?.startWatchdog((err) => log.warn({ err }, 'could not send WATCHDOG=1 to systemd'));
  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down; containers keep running');
    notifySystemd(log, () => systemd?.stopping('shutting down; containers keep running'));
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

/**
 * kuasard's three options, read by Node's own parser: a resident daemon need not hold an
 * argument-parsing package (commander, which the `kuasar` CLI uses) for its lifetime.
 */
function parseOptions(): { config?: string; kind?: string; logLevel?: string } {
  try {
    const { values } = parseArgs({
      options: {
        config: { type: 'string', short: 'c' },
        kind: { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      process.exit(0);
    }
    return { config: values.config, kind: values.kind, logLevel: values['log-level'] };
  } catch (err) {
    process.stderr.write(`kuasard: ${(err as Error).message}\n\n${USAGE}`);
    process.exit(1);
  }
}

/** systemd's notification socket when a `Type=notify` unit runs kuasard (one that cannot be used is logged). */
function systemdNotifier(log: Logger): SystemdNotifier | undefined {
  try {
    const notifier = SystemdNotifier.fromEnvironment(process.env, process.pid);
    if (notifier) log.debug({ socket: notifier.socket, watchdogIntervalMs: notifier.watchdogIntervalMs }, 'notifying systemd');
    return notifier;
  } catch (err) {
    log.warn({ err }, 'not notifying systemd');
    return undefined;
  }
}

/** A notification systemd did not get is logged: the daemon serves regardless. */
function notifySystemd(log: Logger, send: () => void): void {
  try {
    send();
  } catch (err) {
    log.warn({ err }, 'could not notify systemd');
  }
}
