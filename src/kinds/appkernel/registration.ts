// The appkernel kind: each pod is one gVisor sandbox (runsc), a user-space kernel that serves
// every system call of the pod's containers.
import * as check from '../../base/schema.js';
import { kindConfigSchema } from '../../config/kind-schema.js';
import { defineKind } from '../../kind-api/registration.js';
import { APPKERNEL_CAPABILITIES } from './capabilities.js';

export const appkernelKind = defineKind({
  name: 'appkernel',
  capabilities: APPKERNEL_CAPABILITIES,
  config: kindConfigSchema.extend({
    /** runsc: a name on PATH or an absolute path. */
    runsc: check.string().min(1).default('runsc'),
    /**
     * How the sandbox traps its containers' system calls: systrap (seccomp traps, the default
     * upstream) and ptrace work on any host; kvm needs a usable /dev/kvm.
     */
    platform: check.oneOf(['systrap', 'ptrace', 'kvm']).default('systrap'),
    /** More global runsc flags, given to every runsc command as they are (e.g. ["--debug-log=/tmp/runsc/"]). */
    runsc_flags: check.array(check.string().regex(/^--[a-z0-9-]+(=.*)?$/, 'must be one --flag or --flag=value')).default([]),
  }),
  async create(config, { kindDir, reaper, log }) {
    const { AppkernelKind } = await import('./kind.js');
    return new AppkernelKind({ kindDir, reaper, log, runsc: config.runsc, platform: config.platform, runscFlags: config.runsc_flags });
  },
  async checks(config, context) {
    const { appkernelChecks } = await import('./checks.js');
    return appkernelChecks({ runsc: config.runsc, platform: config.platform, runscFlags: config.runsc_flags }, context);
  },
  workloads: {
    hello: {
      image: 'busybox',
      command: [
        'sh',
        '-c',
        'echo "hello from $(hostname), inside the gVisor kernel $(uname -r)"; ip -4 -o addr show scope global | cut -d" " -f2,7',
      ],
    },
    idle: { image: 'busybox', command: ['sleep', '3600'], summary: 'busybox `sleep 3600`' },
  },
  bench: {
    podProcesses: {
      // sandbox.ts names the sandbox's cgroup so (sentryCgroupsPath; a unit test holds the two together).
      cgroupPrefix: 'kuasar-gvisor-',
      what: 'the gVisor sandbox (`runsc-sandbox`), its gofers (`runsc-gofer`, one per container) and its systrap stub processes',
      short: 'gVisor sandbox, gofers, stubs',
      anchor: "gVisor's own density figures: about 23.7 MB of host memory per empty sandbox",
    },
  },
});
