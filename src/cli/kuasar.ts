#!/usr/bin/env node
// kuasar: the operator's command. `kuasar config containerd` prints what containerd needs to
// know about kuasard; more subcommands (demo, bench, doctor, ps, inspect, exec) plug in here.
import { Command } from 'commander';
import { loadConfig } from '../config/config.js';
import { containerdConfigSnippet } from '../config/containerd.js';
import { registerAdmin } from './admin.js';
import { registerBench } from './bench.js';
import { registerDoctor } from './doctor.js';
import { registerImage } from './image.js';
import { registerInstall } from './install.js';

const program = new Command('kuasar')
  .description('kuasar-ts: a multi-sandbox container runtime for containerd 2.x')
  // Lets `kuasar exec <sandbox> <command...>` hand the command's own options through.
  .enablePositionalOptions();

const config = program.command('config').description('configuration helpers');
config
  .command('containerd')
  .description('print the containerd (config version 3) tables that register every enabled kind')
  .option('-c, --config <file>', 'kuasard configuration file (TOML)', process.env.KUASAR_CONFIG)
  .action(async (opts: { config?: string }) => {
    process.stdout.write(containerdConfigSnippet(await loadConfig(opts.config)));
  });

program
  .command('demo')
  .description('run pods of every working kind through CRI on a private containerd, then clean up (root)')
  .action(async () => {
    const { runDemo } = await import('./demo.js');
    await runDemo();
  });

registerBench(program);
registerImage(program);
registerInstall(program);
registerDoctor(program);
registerAdmin(program);

try {
  await program.parseAsync();
} catch (err) {
  process.stderr.write(`kuasar: ${(err as Error).message}\n`);
  process.exit(1);
}
