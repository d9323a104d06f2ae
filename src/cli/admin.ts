// `kuasar ps`, `kuasar inspect` and `kuasar exec`: what a running kuasard holds, asked on its
// admin socket (src/daemon/admin-server.ts; root only). The socket is <state_dir>/admin.sock, or
// `admin_socket`, of the configuration kuasard runs with: --state-dir names the state directory
// directly, else --config (or KUASAR_CONFIG, else the installed /etc/kuasar/config.toml when there
// is one) is read for it.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { adminSocketPath, loadConfig } from '../config/config.js';
import {
  EXEC_PREFIX,
  type ExecResponse,
  INSPECT_PREFIX,
  type Inspected,
  MAX_EXEC_TIMEOUT_MS,
  PS_PATH,
  type PsResponse,
} from '../daemon/admin-api.js';
import { DEFAULT_INSTALL_PATHS } from '../install/install.js';
import { askKuasard } from './admin-client.js';
import { formatInspect, formatPs } from './admin-format.js';

interface SocketOptions {
  stateDir?: string;
  config?: string;
  json?: boolean;
}

const DEFAULT_EXEC_TIMEOUT_S = 30;

function withSocketOptions(command: Command): Command {
  const installed = existsSync(DEFAULT_INSTALL_PATHS.kuasardConfig) ? DEFAULT_INSTALL_PATHS.kuasardConfig : undefined;
  return command
    .option('--state-dir <dir>', "kuasard's state directory (its admin socket is admin.sock there)")
    .option('-c, --config <file>', "kuasard's configuration (TOML), for its admin socket", process.env.KUASAR_CONFIG ?? installed);
}

async function socketOf(opts: SocketOptions): Promise<string> {
  if (opts.stateDir) return join(resolve(opts.stateDir), 'admin.sock');
  return adminSocketPath(await loadConfig(opts.config));
}

const printJson = (value: unknown) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);

export function registerAdmin(program: Command): void {
  withSocketOptions(program.command('ps').description("list kuasard's sandboxes: kind, state, pid, age, containers (root)"))
    .option('--json', "print kuasard's answer as JSON")
    .action(async (opts: SocketOptions) => {
      const ps = await askKuasard<PsResponse>(await socketOf(opts), 'GET', PS_PATH);
      if (opts.json) printJson(ps);
      else process.stdout.write(formatPs(ps, Date.now()));
    });

  withSocketOptions(
    program
      .command('inspect')
      .description("a sandbox's or a container's record: state, pod, resources, directory, mounts, sockets, the kind's state (root)")
      .argument('<id>', 'a sandbox or container id, or the beginning of exactly one'),
  )
    .option('--json', "print kuasard's answer as JSON")
    .action(async (id: string, opts: SocketOptions) => {
      const inspected = await askKuasard<Inspected>(await socketOf(opts), 'GET', `${INSPECT_PREFIX}${encodeURIComponent(id)}`);
      if (opts.json) printJson(inspected);
      else process.stdout.write(formatInspect(inspected, Date.now()));
    });

  withSocketOptions(
    program
      .command('exec')
      .description("run a command in a pod's own machine (a vmm pod's guest), outside its containers, as root there, for debugging (root)")
      .argument('<sandbox>', 'a sandbox id, or the beginning of exactly one')
      .argument('<command...>', 'the program (busybox applets, node, runc) and its arguments; options after <sandbox> are its own')
      // Options after the sandbox id are the command's own.
      .passThroughOptions(),
  )
    .option(
      '--timeout <seconds>',
      `kill the command after this long (at most ${MAX_EXEC_TIMEOUT_MS / 1000})`,
      String(DEFAULT_EXEC_TIMEOUT_S),
    )
    .action(async (sandbox: string, command: string[], opts: SocketOptions & { timeout: string }) => {
      // Options passed through keep a `--` that came after the sandbox id: it only separates.
      const argv = command[0] === '--' ? command.slice(1) : command;
      const seconds = Number(opts.timeout);
      if (!(seconds > 0) || seconds * 1000 > MAX_EXEC_TIMEOUT_MS) {
        throw new Error(`--timeout ${opts.timeout}: give seconds between 0 and ${MAX_EXEC_TIMEOUT_MS / 1000}`);
      }
      const result = await askKuasard<ExecResponse>(await socketOf(opts), 'POST', `${EXEC_PREFIX}${encodeURIComponent(sandbox)}`, {
        argv,
        timeoutMs: Math.round(seconds * 1000),
      });
      process.stdout.write(Buffer.from(result.stdout, 'base64'));
      process.stderr.write(Buffer.from(result.stderr, 'base64'));
      if (result.stdoutTruncated || result.stderrTruncated) process.stderr.write('kuasar: the output was cut short (at 1 MiB a stream)\n');
      if (result.timedOut) process.stderr.write(`kuasar: the command was killed after ${seconds} s\n`);
      process.exitCode = result.exitStatus;
    });
}
