// Pod starts as the benchmark times them, the way `crictl run` does one: RunPodSandbox,
// CreateContainer, StartContainer, and then ContainerStatus until CRI reports the container
// RUNNING (the first status call normally says so already). Removal is not timed.
import { create } from '@bufbuild/protobuf';
import { LinuxContainerResourcesSchema } from '../api/cri/runtime/v1/api_pb.js';
import { ContainerState } from '../cri/client.js';
import type { Environment } from '../devenv/environment.js';
import { containerConfig } from '../devenv/pods.js';
import { idleWorkload } from '../devenv/workloads.js';
import { BASELINE_KIND } from './kinds.js';

const RUNNING_TIMEOUT_MS = 60_000;
const STATUS_POLL_MS = 5;

export interface StartedPod {
  podId: string;
  containerId: string;
  /**
   * Wall clock (epoch ms) when RunPodSandbox was sent and when RUNNING was seen: Date.now(), the
   * clock kuasard's log records are stamped with, so that they can be matched to this start.
   */
  startedAt: number;
  endedAt: number;
  /** End-to-end duration, from a monotonic clock. */
  ms: number;
  /** Of which RunPodSandbox: sent to its reply (the pod's sandbox ready), same clock. */
  sandboxMs: number;
}

export interface PodShape {
  handler: string;
  /** The kuasar kind behind the handler (none for the baseline, which runs what BASELINE_KIND runs): it decides the container. */
  kind?: string;
  name: string;
  hostNetwork: boolean;
  /** A pod-level memory limit (a pod a kind's warm pool cannot serve, KindBenchmark.warmPool). */
  memoryLimitMib?: number;
}

/** Starts one pod with one long-running container and times it end to end. */
export async function startTimedPod(env: Environment, shape: PodShape): Promise<StartedPod> {
  const pod = env.podConfig({ name: shape.name, hostNetwork: shape.hostNetwork });
  if (shape.memoryLimitMib !== undefined)
    pod.linux!.resources = create(LinuxContainerResourcesSchema, { memoryLimitInBytes: BigInt(shape.memoryLimitMib) * 1024n * 1024n });
  // A container that stays up, so that a pod keeps its processes while memory is measured.
  const container = containerConfig({ name: 'bench', ...idleWorkload(shape.kind ?? BASELINE_KIND.name) });
  const startedAt = Date.now();
  const began = performance.now();
  const { podSandboxId } = await env.cri.runtime.runPodSandbox({ config: pod, runtimeHandler: shape.handler });
  const sandboxMs = performance.now() - began;
  try {
    const { containerId } = await env.cri.runtime.createContainer({ podSandboxId, config: container, sandboxConfig: pod });
    await env.cri.runtime.startContainer({ containerId });
    await env.cri.waitForContainerState(containerId, ContainerState.CONTAINER_RUNNING, {
      timeoutMs: RUNNING_TIMEOUT_MS,
      intervalMs: STATUS_POLL_MS,
    });
    const ms = performance.now() - began;
    return { podId: podSandboxId, containerId, startedAt, endedAt: Date.now(), ms, sandboxMs };
  } catch (err) {
    await removePod(env, podSandboxId).catch(() => undefined);
    throw err;
  }
}

export async function removePod(env: Environment, podId: string): Promise<void> {
  await env.cri.runtime.stopPodSandbox({ podSandboxId: podId });
  await env.cri.runtime.removePodSandbox({ podSandboxId: podId });
}

/**
 * Runs `work` on every item with at most `limit` running at once, in item order; resolves with
 * the outcome of each. Once `signal` is aborted no new item starts: those left are rejected
 * with the signal's reason.
 */
export async function inPool<T, R>(
  items: readonly T[],
  limit: number,
  work: (item: T, index: number) => Promise<R>,
  signal?: AbortSignal,
): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length && !signal?.aborted) {
      const index = next++;
      try {
        results[index] = { status: 'fulfilled', value: await work(items[index] as T, index) };
      } catch (reason) {
        results[index] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  for (let i = next; i < items.length; i++) results[i] = { status: 'rejected', reason: signal?.reason };
  return results;
}

/** Removes pods, several at a time; returns one message per pod that could not be removed. */
export async function removePods(env: Environment, podIds: readonly string[], limit = 8): Promise<string[]> {
  const outcomes = await inPool(podIds, limit, (id) => removePod(env, id));
  return outcomes.flatMap((o, i) => (o.status === 'rejected' ? [`remove ${podIds[i]}: ${(o.reason as Error).message}`] : []));
}
