// containerd hands the CRI PodSandboxConfig to the controller as an Any in Create.options.
// Decode it here, at the edge, into core's protocol-free PodSpec.
import type { Any } from '@bufbuild/protobuf/wkt';
import { NamespaceMode, PodSandboxConfigSchema, type PodSandboxConfig } from '../api/cri/runtime/v1/api_pb.js';
import { invalidArgument } from '../base/errors.js';
import type { PodResources, PodSpec } from '../base/model.js';
import { unpackAny } from './wkt.js';

export function decodePodSandboxConfig(options: Any | undefined, sandboxId: string): PodSandboxConfig {
  if (!options || options.typeUrl === '') {
    throw invalidArgument(`create sandbox ${sandboxId}: options carry no PodSandboxConfig (drive this sandboxer through CRI)`);
  }
  let config: PodSandboxConfig | undefined;
  try {
    config = unpackAny(options, PodSandboxConfigSchema);
  } catch (err) {
    throw invalidArgument(`create sandbox ${sandboxId}: PodSandboxConfig does not decode: ${(err as Error).message}`);
  }
  if (!config) throw invalidArgument(`create sandbox ${sandboxId}: options hold ${options.typeUrl}, expected runtime.v1.PodSandboxConfig`);
  return config;
}

const pidModes: Record<number, PodSpec['pidMode']> = {
  [NamespaceMode.POD]: 'pod',
  [NamespaceMode.CONTAINER]: 'container',
  [NamespaceMode.NODE]: 'node',
};

/**
 * What containerd's CRI gives every pod with a network namespace of its own unless the pod sets
 * them (its enable_unprivileged_ports and enable_unprivileged_icmp, on by default since
 * containerd 2.0): any user may bind ports below 1024 and send pings.
 */
const UNPRIVILEGED_NETWORK_SYSCTLS: Readonly<Record<string, string>> = {
  'net.ipv4.ip_unprivileged_port_start': '0',
  'net.ipv4.ping_group_range': '0 2147483647',
};

export function podSpecFromConfig(config: PodSandboxConfig): PodSpec {
  const ns = config.linux?.securityContext?.namespaceOptions;
  const pidMode = pidModes[ns?.pid ?? NamespaceMode.CONTAINER];
  if (!pidMode) throw invalidArgument(`PodSandboxConfig: PID namespace mode ${ns?.pid} is not supported for a pod`);
  // A pod user namespace would need its pinning and ID-mapped mounts, which the runc kind lacks:
  // refused here rather than failing later at each container.
  if (ns?.usernsOptions && ns.usernsOptions.mode !== NamespaceMode.NODE) {
    throw invalidArgument(
      `PodSandboxConfig: a user namespace for the pod (userns_options mode ${NamespaceMode[ns.usernsOptions.mode]}) is not supported`,
    );
  }
  const hostNetwork = ns?.network === NamespaceMode.NODE;
  return {
    name: config.metadata?.name ?? '',
    namespace: config.metadata?.namespace ?? '',
    uid: config.metadata?.uid ?? '',
    attempt: config.metadata?.attempt ?? 0,
    hostname: config.hostname,
    logDirectory: config.logDirectory,
    dns: config.dnsConfig
      ? { servers: [...config.dnsConfig.servers], searches: [...config.dnsConfig.searches], options: [...config.dnsConfig.options] }
      : null,
    hostNetwork,
    hostIpc: ns?.ipc === NamespaceMode.NODE,
    pidMode,
    cgroupParent: config.linux?.cgroupParent ?? '',
    sysctls: { ...(hostNetwork ? {} : UNPRIVILEGED_NETWORK_SYSCTLS), ...config.linux?.sysctls },
    labels: { ...config.labels },
    annotations: { ...config.annotations },
    resources: podResources(config),
  };
}

/**
 * The pod's size: kubelet's pod-level resources (the sum of its containers' limits) plus the
 * runtime class's overhead. A pod without a limit of its own has none (0), overhead or not: the
 * overhead is what the runtime adds on top of a limit, not a size by itself.
 */
function podResources(config: PodSandboxConfig): PodResources {
  const { resources, overhead } = config.linux ?? {};
  const sum = (field: 'cpuQuota' | 'memoryLimitInBytes') => {
    const own = resources?.[field] ?? 0n;
    const extra = overhead?.[field] ?? 0n;
    // -1 is unlimited, in either.
    return own <= 0n || extra < 0n ? 0 : Number(own + extra);
  };
  const cpuQuotaUs = sum('cpuQuota');
  return { cpuQuotaUs, cpuPeriodUs: cpuQuotaUs > 0 ? Number(resources?.cpuPeriod ?? 0n) : 0, memoryLimitBytes: sum('memoryLimitInBytes') };
}
