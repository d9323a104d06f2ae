// The vmm kind: each pod is a QEMU microVM with its own guest kernel; kuasar's agent (PID 1 in
// the guest) runs the pod's containers with runc there, and kuasard serves the Task API on the
// host and forwards to it.
import { defineKind } from '../../kind-api/registration.js';
import { VMM_CAPABILITIES } from './capabilities.js';
import { vmmConfigSchema } from './config.js';

export const vmmKind = defineKind({
  name: 'vmm',
  capabilities: VMM_CAPABILITIES,
  config: vmmConfigSchema,
  async create(config, { kindDir, reaper, log, keptDescriptors }) {
    const { VmmKind } = await import('./kind.js');
    return new VmmKind({ kindDir, reaper, log, config, keptDescriptors });
  },
  async checks(config, context) {
    const { vmmChecks } = await import('./checks.js');
    return vmmChecks(config, context);
  },
  workloads: {
    hello: {
      image: 'busybox',
      command: ['sh', '-c', 'echo "hello from $(hostname), inside a microVM with the guest kernel $(uname -r)"'],
    },
    idle: { image: 'busybox', command: ['sleep', '3600'], summary: 'busybox `sleep 3600`' },
  },
  bench: {
    onlyWhenAsked: 'each pod is a VM: without KVM it boots for seconds under emulation and holds its guest memory',
  },
});
