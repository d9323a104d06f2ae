// Pods and containers run through CRI the way the e2e tests run them: a pod that is always
// stopped and removed, with a snapshot of the host before and after (what it left behind), and
// containers that run to their exit (with their CRI log) or keep running (with their host pid).
import type { ContainerConfig, ContainerStatus, PodSandboxConfig } from '../api/cri/runtime/v1/api_pb.js';
import { ContainerState } from '../cri/client.js';
import { criLogText, readContainerLog } from '../cri/log.js';
import type { Environment } from './environment.js';
import { diffHost, snapshotHost, type HostDiff } from './leaks.js';
import { containerLogPath } from './pods.js';

export interface PodRun {
  podId: string;
  pod: PodSandboxConfig;
}

export interface PodRunResult {
  /** What the pod left on the host: NO_LEAKS when it cleaned up after itself. */
  leaks: HostDiff;
}

export interface RunPodOptions {
  /** Awaited after the pod is removed, before the host is compared (say, until init reaped an orphan). */
  settle?: () => Promise<void>;
}

/**
 * Runs `pod` on `handler`, calls `body`, then stops and removes the pod (also when `body`
 * throws). `watchDirs` are compared file by file before and after, besides mounts, processes,
 * cgroups, network namespaces and links of the environment.
 */
export async function runPod(
  env: Environment,
  handler: string,
  pod: PodSandboxConfig,
  watchDirs: readonly string[],
  body: (run: PodRun) => Promise<void>,
  options: RunPodOptions = {},
): Promise<PodRunResult> {
  assertDaemonsUp(env);
  const before = snapshotHost({ dirs: watchDirs });
  const { podSandboxId } = await env.cri.runtime.runPodSandbox({ config: pod, runtimeHandler: handler });
  const remove = async () => {
    await env.cri.runtime.stopPodSandbox({ podSandboxId });
    await env.cri.runtime.removePodSandbox({ podSandboxId });
  };
  try {
    await body({ podId: podSandboxId, pod });
  } catch (err) {
    // The body's failure is the one to report; a removal that fails after it is told alongside.
    await remove().catch((removal: Error) => {
      if (err instanceof Error) err.message += ` (removing the pod then failed too: ${removal.message})`;
    });
    const down = env.daemonsDown();
    if (down.length > 0 && err instanceof Error) err.message += `\n${down.join('\n')}`;
    throw err;
  }
  await remove();
  await options.settle?.();
  return { leaks: diffHost(before, snapshotHost({ dirs: watchDirs }), { scope: env.scope }) };
}

/** A pod needs both daemons: a dead one would only show as calls running into their deadlines. */
function assertDaemonsUp(env: Environment): void {
  const down = env.daemonsDown();
  if (down.length > 0) throw new Error(`the environment has lost a daemon:\n${down.join('\n')}`);
}

export interface ExitedContainer {
  containerId: string;
  status: ContainerStatus;
  stdout: string;
  stderr: string;
}

/** Creates and starts a container in the pod and waits for its exit; its output from the CRI log. */
export async function runToExit(env: Environment, run: PodRun, config: ContainerConfig, timeoutMs = 30_000): Promise<ExitedContainer> {
  const { containerId } = await env.cri.runtime.createContainer({ podSandboxId: run.podId, config, sandboxConfig: run.pod });
  await env.cri.runtime.startContainer({ containerId });
  const status = await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_EXITED, { timeoutMs });
  const log = await readContainerLog(containerLogPath(run.pod, config));
  return { containerId, status, stdout: criLogText(log, 'stdout'), stderr: criLogText(log, 'stderr') };
}

export interface RunningContainer {
  containerId: string;
  /** The host pid of the container's init, from CRI's verbose status. */
  pid: number;
}

/** Creates and starts a container that keeps running; fails unless CRI reports it RUNNING with a pid. */
export async function startRunning(env: Environment, run: PodRun, config: ContainerConfig): Promise<RunningContainer> {
  const { containerId } = await env.cri.runtime.createContainer({ podSandboxId: run.podId, config, sandboxConfig: run.pod });
  await env.cri.runtime.startContainer({ containerId });
  const { status, info } = await env.cri.runtime.containerStatus({ containerId, verbose: true });
  if (status?.state !== ContainerState.CONTAINER_RUNNING) {
    throw new Error(`container ${containerId} is ${status ? ContainerState[status.state] : 'unknown'}, not running`);
  }
  const pid = (JSON.parse(info['info'] ?? '{}') as { pid?: number }).pid;
  if (!pid) throw new Error(`container ${containerId}: the verbose status names no pid`);
  return { containerId, pid };
}
