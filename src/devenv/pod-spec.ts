// A plain pod, as core holds it after decoding CRI's PodSandboxConfig, for unit tests of core,
// the kinds and the state files: each test overrides what it is about.
import type { PodSpec } from '../base/model.js';

export function podSpec(overrides: Partial<PodSpec> = {}): PodSpec {
  return {
    name: 'web',
    namespace: 'default',
    uid: 'uid-1',
    attempt: 0,
    hostname: 'web',
    logDirectory: '/var/log/pods/web',
    dns: null,
    hostNetwork: false,
    hostIpc: false,
    pidMode: 'container',
    cgroupParent: '',
    sysctls: {},
    labels: {},
    annotations: {},
    ...overrides,
  };
}
