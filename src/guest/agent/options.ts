// What the agent is told at start: the kernel command line in the VM (kuasar.agent_port,
// kuasar.log_level), command-line flags and the environment on a host (tests, debugging).
import { invalidArgument } from '../../base/errors.js';

export interface AgentOptions {
  /** Serve on this unix socket instead of a virtio-serial port (tests, debugging). */
  listen?: string;
  /** The name of the virtio-serial port to serve on (/sys/class/virtio-ports/<vport>/name). */
  agentPort: string;
  logLevel: string;
  /** Where the agent keeps its state: bundles/, runc/, console/, ns/, etc/ below it. */
  stateDir: string;
  /** The PID namespace holder program (native/kuasar-idle.c). */
  pidHolder: string;
}

export const DEFAULT_AGENT_PORT = 'agent.0';
export const DEFAULT_STATE_DIR = '/run/kuasar';
export const DEFAULT_PID_HOLDER = '/usr/lib/kuasar/kuasar-idle';
const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace']);

/**
 * The kernel command line's `name=value` words (a bare word maps to ''). Double quotes group a
 * value with spaces, as the kernel's own parser (next_arg) allows.
 */
export function parseKernelCmdline(text: string): Map<string, string> {
  const params = new Map<string, string>();
  for (const match of text.matchAll(/(?:[^\s"]+|"[^"]*")+/g)) {
    const word = match[0].replaceAll('"', '');
    const equals = word.indexOf('=');
    if (equals < 0) params.set(word, '');
    else params.set(word.slice(0, equals), word.slice(equals + 1));
  }
  return params;
}

/**
 * The agent's options: flags (`--listen <path>`, `--state-dir <dir>`, `--log-level <level>`,
 * `--agent-port <name>`, `--pid-holder <path>`) win over the environment (KUASAR_AGENT_LISTEN, KUASAR_AGENT_STATE_DIR),
 * which wins over the kernel command line.
 */
export function parseAgentOptions(argv: readonly string[], env: NodeJS.ProcessEnv, cmdline: string): AgentOptions {
  const kernel = parseKernelCmdline(cmdline);
  const flags = parseFlags(argv);
  const logLevel = flags.get('log-level') ?? kernel.get('kuasar.log_level') ?? 'info';
  if (!LOG_LEVELS.has(logLevel)) throw invalidArgument(`log level ${JSON.stringify(logLevel)}: use one of ${[...LOG_LEVELS].join(', ')}`);
  const options: AgentOptions = {
    agentPort: flags.get('agent-port') ?? kernel.get('kuasar.agent_port') ?? DEFAULT_AGENT_PORT,
    logLevel,
    stateDir: flags.get('state-dir') ?? env.KUASAR_AGENT_STATE_DIR ?? DEFAULT_STATE_DIR,
    pidHolder: flags.get('pid-holder') ?? DEFAULT_PID_HOLDER,
  };
  const listen = flags.get('listen') ?? env.KUASAR_AGENT_LISTEN;
  if (listen) options.listen = listen;
  return options;
}

const FLAGS = new Set(['listen', 'state-dir', 'log-level', 'agent-port', 'pid-holder']);

function parseFlags(argv: readonly string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [name, inline] = arg.startsWith('--') ? arg.slice(2).split(/=(.*)/s, 2) : [undefined, undefined];
    if (name === undefined || !FLAGS.has(name)) throw invalidArgument(`unknown argument ${JSON.stringify(arg)}`);
    const value = inline ?? argv[++i];
    if (value === undefined || value === '') throw invalidArgument(`--${name} needs a value`);
    flags.set(name, value);
  }
  return flags;
}
