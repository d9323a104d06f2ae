// The guest agent: PID 1 of a vmm pod's VM, serving the Agent API (service.ts) over ttrpc on the
// virtio-serial port the host named, or on a unix socket (--listen) for tests and debugging.
// Composition only: each concern lives in its own module.
import { constants, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';

import { createLogger } from '../../base/log.js';
import { Reaper } from '../../linux/reaper.js';
import { OciRuntime } from '../../oci/runtime.js';
import { TtrpcServer } from '../../rpc/ttrpc/index.js';
import { Containers } from './containers.js';
import { parseAgentOptions, type AgentOptions } from './options.js';
import { neverExitOnErrors, setUpAsPid1, type Pid1Report } from './pid1.js';
import { PortChannel } from './port-channel.js';
import { isLongCall, registerAgentService } from './service.js';
import { Sandbox } from './sandbox.js';
import { waitForVirtioPort } from './virtio-port.js';

/**
 * libuv's pool threads: each wait for the port's readiness holds one for up to a second, and
 * runc's pid files, bundles and 9p reads need the others.
 */
const THREAD_POOL_SIZE = '8';
/** How long to wait for the port before saying so in the log (the wait goes on). */
const PORT_WAIT_WARN_MS = 10_000;

export async function runAgent(argv: readonly string[]): Promise<void> {
  // Read by libuv when its pool first starts, which nothing has made it do yet.
  process.env.UV_THREADPOOL_SIZE ||= THREAD_POOL_SIZE;
  const isGuestInit = process.pid === 1;
  const pid1 = isGuestInit ? setUpAsPid1() : undefined;
  const options = parseAgentOptions(argv, process.env, readKernelCmdline());
  const log = createLogger(options.logLevel, process.stderr).child({ component: 'agent' });
  neverExitOnErrors((err, what) => log.error({ error: err instanceof Error ? err.stack : String(err) }, what));
  if (pid1) logPid1Report(log, pid1);

  const reaper = new Reaper().start();
  // Daemons a container leaves behind end up ours: reap them, so that no zombie accumulates.
  reaper.reapOrphans(() => true);
  const runtime = new OciRuntime({ root: path.join(options.stateDir, 'runc') });
  const containers = new Containers(runtime, reaper, path.join(options.stateDir, 'bundles'), path.join(options.stateDir, 'console'), log);
  const sandbox = new Sandbox({ stateDir: options.stateDir, pidHolder: options.pidHolder, isGuestInit }, log);
  const server = new TtrpcServer({ logger: log, longCalls: isLongCall });
  registerAgentService(server, { containers, sandbox, isGuestInit, log });

  if (options.listen) await serveSocket(server, options.listen, isGuestInit, log);
  else await servePort(server, options, log);
}

async function serveSocket(server: TtrpcServer, socketPath: string, isGuestInit: boolean, log: Logger): Promise<void> {
  await server.listen(socketPath);
  log.info({ socket: socketPath }, 'agent serving');
  if (isGuestInit) return;
  // Outside a VM the agent is an ordinary process: a signal ends it (containers keep running).
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'agent stopping');
      void server.close().finally(() => process.exit(0));
    });
  }
}

async function servePort(server: TtrpcServer, options: AgentOptions, log: Logger): Promise<void> {
  let device: string | undefined;
  while (!device) {
    device = await waitForVirtioPort(options.agentPort, PORT_WAIT_WARN_MS).catch((err: Error) => {
      log.warn({ error: err.message }, 'still waiting for the agent port');
      return undefined;
    });
  }
  const fd = openSync(device, constants.O_RDWR | constants.O_NONBLOCK);
  log.info({ port: options.agentPort, device }, 'agent serving');
  await new PortChannel({ read: fd, write: fd }, (stream) => server.serveStream(stream), log).run();
}

function readKernelCmdline(): string {
  try {
    return readFileSync('/proc/cmdline', 'utf8');
  } catch {
    return '';
  }
}

function logPid1Report(log: Logger, report: Pid1Report): void {
  log.info({ mounted: report.mounted, alreadyMounted: report.alreadyMounted, controllers: report.controllers }, 'guest set up');
  for (const failure of report.failed) log.error(failure, 'guest setup step failed');
}
