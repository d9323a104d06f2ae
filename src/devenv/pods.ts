// Pods and containers the way kubelet asks for them, for the e2e tests, the demo and the
// benchmarks: CRI configs that fit an environment (its cgroup parent, its log directory).
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { create } from '@bufbuild/protobuf';
import {
  ContainerConfigSchema,
  LinuxContainerConfigSchema,
  NamespaceMode,
  PodSandboxConfigSchema,
  type ContainerConfig,
  type PodSandboxConfig,
} from '../api/cri/runtime/v1/api_pb.js';
import type { CriClient } from '../cri/client.js';

/** What pod configs need to know of an environment. */
export interface PodPlacement {
  /** Absolute cgroup path that pods go under (see Environment.cgroupParent). */
  cgroupParent: string;
  /** Directory under which each pod gets its CRI log directory. */
  podLogDir: string;
}

export interface PodOptions {
  name: string;
  /** Share the host's network namespace instead of joining the CNI bridge network. */
  hostNetwork?: boolean;
  labels?: Record<string, string>;
}

export function podSandboxConfig(placement: PodPlacement, options: PodOptions): PodSandboxConfig {
  const uid = randomUUID();
  return create(PodSandboxConfigSchema, {
    metadata: { name: options.name, uid, namespace: 'default', attempt: 0 },
    // As kubelet: a host-network pod shares the host's UTS namespace, so it cannot have a
    // hostname of its own (runc refuses to set one).
    hostname: options.hostNetwork ? '' : options.name,
    logDirectory: join(placement.podLogDir, `${options.name}-${uid}`),
    labels: options.labels ?? {},
    linux: {
      cgroupParent: placement.cgroupParent,
      securityContext: {
        // As kubelet: one PID namespace per container unless the pod asks to share one.
        namespaceOptions: {
          network: options.hostNetwork ? NamespaceMode.NODE : NamespaceMode.POD,
          pid: NamespaceMode.CONTAINER,
          ipc: NamespaceMode.POD,
        },
      },
    },
  });
}

export interface ContainerOptions {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  env?: Record<string, string>;
  /** Keep stdin open (CRI `stdin`); with `stdinOnce`, it closes after the first attach ends. */
  stdin?: boolean;
  stdinOnce?: boolean;
  /** Give the container a terminal (CRI `tty`). */
  tty?: boolean;
}

/** A container config whose log goes to `<pod log directory>/<name>.log`. */
export function containerConfig(options: ContainerOptions): ContainerConfig {
  return create(ContainerConfigSchema, {
    metadata: { name: options.name, attempt: 0 },
    image: { image: options.image },
    command: options.command ?? [],
    args: options.args ?? [],
    envs: Object.entries(options.env ?? {}).map(([key, value]) => ({ key, value })),
    logPath: `${options.name}.log`,
    stdin: options.stdin ?? false,
    stdinOnce: options.stdinOnce ?? false,
    tty: options.tty ?? false,
  });
}

/** CRI's resource limits of a container (LinuxContainerResources), the ones the tests set. */
export interface ContainerLimits {
  memoryLimitInBytes?: bigint;
  cpuPeriod?: bigint;
  cpuQuota?: bigint;
  cpuShares?: bigint;
}

/** A container config with CRI resource limits. */
export function limitedContainerConfig(options: ContainerOptions, resources: ContainerLimits): ContainerConfig {
  const config = containerConfig(options);
  config.linux = create(LinuxContainerConfigSchema, { resources });
  return config;
}

/** The host path of a container's CRI log. */
export function containerLogPath(pod: PodSandboxConfig, container: ContainerConfig): string {
  return join(pod.logDirectory, container.logPath);
}

/** Stops and removes every pod (best effort, for cleanup); returns the errors met. */
export async function removeAllPods(cri: CriClient, timeoutMs = 30_000): Promise<string[]> {
  const problems: string[] = [];
  const { items } = await cri.runtime.listPodSandbox({}, { timeoutMs });
  for (const pod of items) {
    await cri.runtime
      .stopPodSandbox({ podSandboxId: pod.id }, { timeoutMs })
      .catch((err: Error) => problems.push(`stop ${pod.id}: ${err.message}`));
    await cri.runtime
      .removePodSandbox({ podSandboxId: pod.id }, { timeoutMs })
      .catch((err: Error) => problems.push(`remove ${pod.id}: ${err.message}`));
  }
  return problems;
}
