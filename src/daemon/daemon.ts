// kuasard's composition root: one process serving every enabled kind. Each kind gets its own
// controller socket (one containerd proxy plugin each); each sandbox its own task socket.
import { chmod, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { Controller } from '../api/containerd/services/sandbox/v1/sandbox_pb.js';
import { Task } from '../api/containerd/runtime/task/v3/shim_pb.js';
import { Streaming } from '../api/containerd/services/streaming/v1/streaming_pb.js';
import { failedPrecondition } from '../base/errors.js';
import { adminSocketPath, enabledKinds, type Config } from '../config/config.js';
import { sandboxerName } from '../config/containerd.js';
import { runChecks, servePlan } from '../doctor/run.js';
import type { Sandbox } from '../engine/sandbox.js';
import { Sandboxer, type TaskEndpoint, type TaskEndpoints } from '../engine/sandboxer.js';
import { IdleMemoryRelease } from './idle-memory.js';
import { KeptTaskSockets } from './kept-task-sockets.js';
import type { DaemonMetrics } from './metrics.js';
import type { AdminServer } from './admin-server.js';
import type { MetricsServer } from './metrics-server.js';
import { checkTaskSocketPath, taskSocketPath } from './task-socket.js';
import { createKind } from '../kinds/index.js';
import { Reaper } from '../linux/reaper.js';
import { addGrpcService } from '../rpc/grpc.js';
import { TtrpcServer } from '../rpc/ttrpc/server.js';
import { serviceHandlers } from '../rpc/ttrpc/typed.js';
import type { ServiceHandlers } from '../rpc/ttrpc/handlers.js';
import { type CallObserver, withCallLog } from '../services/call-log.js';
import { controllerHandlers } from '../services/controller.js';
import { refusingHandlers } from '../services/refusing-controller.js';
import { ContainerdEventForwarder } from '../services/events.js';
import { streamingHandlers } from '../services/streaming.js';
import { isReadOnlyTaskCall, isTaskWait, TASK_SERVICE_NAMES, taskHandlers } from '../services/task.js';

/** containerd's own limit for sandbox controller messages. */
const MAX_GRPC_MESSAGE = 16 << 20;
/**
 * A controller connection with no call in flight for this long is closed (GOAWAY; containerd's
 * client dials again on its next call). Without it a peer that half-closes in the middle of an
 * HTTP/2 frame (a header announcing a payload that never comes) keeps its connection for good:
 * Node's HTTP/2 session waits for the payload and ignores the end of the input.
 */
const CONTROLLER_IDLE_MS = 15_000;

/**
 * How long controller calls in flight at exit may take to finish. A graceful shutdown alone
 * never ends: containerd holds a Controller/Wait open for every sandbox until the sandbox stops.
 * Past this the calls left are cancelled; containerd sees the connection drop as after a crash
 * and talks to the next run.
 */
const CONTROLLER_SHUTDOWN_GRACE_MS = 2_000;

export interface Daemon {
  readonly sandboxers: Sandboxer[];
  close(): Promise<void>;
}

/** The fd keeper's control socket, in the state directory. */
const FD_KEEPER_SOCKET = 'fd-keeper.sock';

/**
 * Task sockets live in the sandbox's own directory, so removing the sandbox removes them. Their
 * descriptors are kept in the fd keeper too, so that containerd's connections survive a restart.
 */
function taskEndpoints(log: Logger, sockets: KeptTaskSockets, observe: CallObserver): TaskEndpoints {
  // One set of handlers for every sandbox of the kind: a call finds its sandbox in its context.
  const services: TaskServices = {
    task: serviceHandlers(
      Task,
      withCallLog(taskHandlers(), (_request, call) => call.scope.log, 'task', observe),
    ),
    streaming: serviceHandlers(Streaming, streamingHandlers()),
  };
  return { check: checkTaskSocketPath, open: (sandbox) => openTaskEndpoint(sandbox, log, sockets, services) };
}

/** The services of a sandbox's task socket. */
interface TaskServices {
  task: ServiceHandlers<Sandbox>;
  streaming: ServiceHandlers<Sandbox>;
}

async function openTaskEndpoint(sandbox: Sandbox, log: Logger, sockets: KeptTaskSockets, services: TaskServices): Promise<TaskEndpoint> {
  const path = taskSocketPath(sandbox.dir);
  const server = new TtrpcServer({
    scope: sandbox,
    logger: sandbox.log,
    // A Wait is answered when its process ends. A read-only call the previous run left
    // unanswered is run again (see isReadOnlyTaskCall).
    longCalls: isTaskWait,
    resumable: isReadOnlyTaskCall,
    ...sockets.hooks(path),
  });
  server.register(TASK_SERVICE_NAMES, services.task);
  // Stdio of handlers with io_type "streaming": containerd dials the task address for it too.
  server.register(Streaming.typeName, services.streaming);
  await sockets.serve(server, path);
  log.debug({ sandbox: sandbox.id, path }, 'task API listening');
  return { address: `ttrpc+unix://${path}`, close: () => sockets.close(server, path) };
}

/** Lets calls in flight finish for a moment, then cancels what is left (see CONTROLLER_SHUTDOWN_GRACE_MS). */
function shutdownGrpc(server: grpc.Server): Promise<void> {
  return new Promise((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, CONTROLLER_SHUTDOWN_GRACE_MS);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}

async function listenGrpc(server: grpc.Server, path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await rm(path, { force: true });
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  await chmod(path, 0o600);
}

function controllerServer(): grpc.Server {
  return new grpc.Server({
    'grpc.max_receive_message_length': MAX_GRPC_MESSAGE,
    'grpc.max_send_message_length': MAX_GRPC_MESSAGE,
    'grpc.max_connection_idle_ms': CONTROLLER_IDLE_MS,
  });
}

/**
 * Which kinds kuasard serves: each kind enabled "auto" or true, checked (the quick checks, see
 * src/doctor); one that cannot run is left with a warning ("auto") or stops the start (true).
 */
async function checkKinds(config: Config, log: Logger, only: string | undefined) {
  const kinds = enabledKinds(config, only);
  if (kinds.length === 0) throw new Error('no sandbox kind is enabled: enable one under [kinds] in the configuration');
  const started = performance.now();
  const report = await runChecks(config, { depth: 'start', kinds: kinds.map((k) => k.name) });
  for (const check of report.host.filter((c) => c.status === 'warn')) log.warn({ check: check.name, fix: check.fix }, check.finding);
  const plan = servePlan(report);
  log.info({ checkMs: Math.round(performance.now() - started), serve: plan.serve }, 'host checked');
  if (plan.refusal) throw failedPrecondition(`${plan.refusal}\n(kuasar doctor tells more)`);
  for (const { name, reasons } of plan.leave) log.warn({ kind: name, reasons }, 'kind not served: it cannot run here (enabled = "auto")');
  return { serve: kinds.filter((k) => plan.serve.includes(k.name)), leave: kinds.filter((k) => !plan.serve.includes(k.name)), plan };
}

/** prom-client is loaded only when metrics are served: without them it costs kuasard nothing. */
async function createMetrics(config: Config): Promise<DaemonMetrics | undefined> {
  if (!config.metrics_address) return undefined;
  const { DaemonMetrics } = await import('./metrics.js');
  return new DaemonMetrics();
}

async function serveMetrics(config: Config, metrics: DaemonMetrics | undefined, log: Logger): Promise<MetricsServer | undefined> {
  if (!config.metrics_address || !metrics) return undefined;
  const { serveMetrics } = await import('./metrics-server.js');
  return serveMetrics(config.metrics_address, () => metrics.scrape(), log.child({ component: 'metrics' }));
}

/**
 * The admin socket (`kuasar ps`, `inspect`, `exec`), once the kinds serve. A diagnostic tool: one
 * that cannot listen is logged, and the pods are served all the same.
 */
async function serveAdminSocket(config: Config, sandboxers: readonly Sandboxer[], log: Logger): Promise<AdminServer | undefined> {
  const { serveAdmin } = await import('./admin-server.js');
  const path = adminSocketPath(config);
  const adminLog = log.child({ component: 'admin' });
  return serveAdmin(path, sandboxers, adminLog).catch((err: unknown) => {
    adminLog.error({ err, socket: path }, 'the admin socket cannot listen; kuasar ps, inspect and exec will not reach this kuasard');
    return undefined;
  });
}

export async function startDaemon(config: Config, log: Logger, only?: string): Promise<Daemon> {
  await mkdir(config.state_dir, { recursive: true, mode: 0o700 });
  const { serve, leave, plan } = await checkKinds(config, log, only);
  // Before the kinds start: stages of their recovery are observed too.
  const metrics = await createMetrics(config);
  const idleMemory = new IdleMemoryRelease(log.child({ component: 'memory' }));
  const reaper = new Reaper().start();
  const events = new ContainerdEventForwarder(config.containerd.ttrpc_address, log.child({ component: 'events' }));
  const sandboxers: Sandboxer[] = [];
  const servers: grpc.Server[] = [];
  // Before any sandbox is recovered: they take back the task sockets the keeper held for them.
  const kindDirs = serve.map(({ name }) => join(config.state_dir, name));
  const sockets = await KeptTaskSockets.open(join(config.state_dir, FD_KEEPER_SOCKET), kindDirs, log.child({ component: 'fd-keeper' }));
  const reasons = new Map(plan.leave.map((k) => [k.name, k.reasons]));

  for (const served of serve) {
    const { name, enabled, listen } = served;
    const kindLog = log.child({ kind: name });
    let sandboxer: Sandboxer;
    try {
      const kindDir = join(config.state_dir, name);
      const kind = await createKind(name, config.kinds[name], {
        kindDir,
        reaper,
        log: kindLog,
        keptDescriptors: sockets.descriptors(kindDir),
      });
      const taskObserver = idleMemory.observer(metrics?.rpcObserver(name, 'task'));
      sandboxer = new Sandboxer(kind, config.state_dir, events, taskEndpoints(kindLog, sockets, taskObserver), kindLog);
      await sandboxer.init();
      metrics?.recovered(sandboxer);
    } catch (err) {
      // Its start is its last check (the appkernel kind's platform probe, the vmm kind's accelerator).
      if (enabled === true) throw failedPrecondition(`${name} is enabled = true but cannot start here: ${(err as Error).message}`);
      kindLog.warn({ err: (err as Error).message }, 'kind not served: it failed to start (enabled = "auto")');
      reasons.set(name, [`its start failed: ${(err as Error).message}`]);
      leave.push(served);
      continue;
    }
    const server = controllerServer();
    addGrpcService(
      server,
      Controller,
      withCallLog(controllerHandlers(sandboxer), kindLog, 'controller', idleMemory.observer(metrics?.rpcObserver(name, 'controller'))),
    );
    await listenGrpc(server, listen);
    kindLog.info({ listen }, 'sandbox controller listening');
    sandboxers.push(sandboxer);
    servers.push(server);
  }
  if (sandboxers.length === 0)
    throw failedPrecondition(`no sandbox kind can run here: ${[...reasons].map(([k, r]) => `${k}: ${r.join('; ')}`).join('\n')}`);
  // containerd keeps the handlers of the kinds left: their calls are answered with why.
  for (const { name, listen } of leave) {
    const server = controllerServer();
    const why = `${sandboxerName(name)} is not served by kuasard on this host: ${(reasons.get(name) ?? []).join('; ')} (run kuasar doctor)`;
    addGrpcService(server, Controller, refusingHandlers(Controller, why));
    await listenGrpc(server, listen);
    servers.push(server);
  }
  sockets.releaseUnclaimed();
  metrics?.watch({ sandboxers, keeperUp: () => sockets.keeperUp });
  const metricsServer = await serveMetrics(config, metrics, log);
  const adminServer = await serveAdminSocket(config, sandboxers, log);
  // The start (configuration, modules, the kinds' checks and their child processes' output) is
  // work like a burst of calls: what it left is given back once nothing follows.
  idleMemory.noteWork();

  return {
    sandboxers,
    async close() {
      await adminServer?.close();
      await metricsServer?.close();
      metrics?.close();
      await Promise.all(servers.map(shutdownGrpc));
      // The task sockets stay open for the next run: their endpoints are left, not closed.
      sockets.handOver();
      await Promise.all(sandboxers.map((s) => s.close()));
      events.close();
      reaper.stop();
      idleMemory.close();
    },
  };
}
