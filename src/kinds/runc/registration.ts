// The runc kind: pods of namespaces and cgroups on the host, containers run by an OCI runtime CLI.
import * as check from '../../base/schema.js';
import { kindConfigSchema } from '../../config/kind-schema.js';
import { RUNC_CAPABILITIES } from './capabilities.js';
import { defineKind } from '../../kind-api/registration.js';

export const runcKind = defineKind({
  name: 'runc',
  capabilities: RUNC_CAPABILITIES,
  config: kindConfigSchema.extend({
    /** The OCI runtime CLI: a name on PATH or an absolute path (runc, crun), or "auto": crun where its self-test at start passes, runc otherwise. */
    oci_runtime: check.string().min(1).default('auto'),
  }),
  async create(config, { kindDir, reaper, log }) {
    const { RuncKind } = await import('./kind.js');
    return new RuncKind({ kindDir, ociRuntime: config.oci_runtime, reaper, log });
  },
  async checks(config, context) {
    const { runcChecks } = await import('./checks.js');
    return runcChecks(config.oci_runtime, context);
  },
  workloads: {
    hello: {
      image: 'busybox',
      command: [
        'sh',
        '-c',
        'echo "hello from $(hostname), pid $$ in its own namespace"; ip -4 -o addr show scope global | cut -d" " -f2,7',
      ],
    },
    idle: { image: 'busybox', command: ['sleep', '3600'], summary: 'busybox `sleep 3600`' },
  },
  bench: { versusBaseline: true },
});
