// The vmm kind: each pod is a QEMU microVM with its own guest kernel; kuasar's agent (PID 1 in
// the guest) runs the pod's containers with runc there, and kuasard serves the Task API on the
// host and forwards to it.
import { defineKind } from '../../kind-api/registration.js';
import { VMM_CAPABILITIES } from './capabilities.js';
import { vmmConfigSchema } from './config.js';

/** The warm pool of the benchmark's kuasard: one VM would do for pods started one at a time; two give the idle cost per VM from more than one. */
const BENCH_WARM_POOL = 2;

/** A warm VM's memory: a pod without a memory limit's (default_memory_mib's default). */
const POOL_VM_MEMORY_MIB = vmmConfigSchema.shape.default_memory_mib.parse(undefined);

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
    // 10 VMs booting at once under TCG on 2 busy cores took over the default 60 s each (every
    // one of them then failed): the benchmark gives them 5 minutes, and its CRI calls as long.
    // A warm pool of BENCH_WARM_POOL VMs, in a cgroup below the environment's.
    config: ({ cgroupName }) => ({
      boot_timeout_ms: 300_000,
      warm_pool: BENCH_WARM_POOL,
      warm_pool_cgroup_parent: `/${cgroupName}/kuasar-vmm-warm`,
    }),
    runLimits: {
      singleRounds: 20,
      parallelPods: 10,
      parallelRounds: 3,
      memoryPods: 10,
      why:
        'under TCG on 2 cores a VM pod takes 15-30 s to start and a batch of 10 about 2 minutes, all of it CPU, ' +
        'and each VM holds about 400 MiB: 20 starts still give a p90',
    },
    // sandbox.ts names each VM's QEMU so (vmName: `-name kuasar-vmm-<sandbox id>,...`; a unit test holds the two together).
    podProcesses: {
      argumentPrefix: 'kuasar-vmm-',
      what:
        "the VM's QEMU process (`kuasar-vmm-<sandbox id>`), whose memory holds the guest's RAM as far as the guest has touched it " +
        "(its kernel, the agent, the containers, its page cache) and, under TCG, its translations of the guest's code (anonymous executable memory)",
      short: 'QEMU (the VM)',
      anchor:
        "Kata Containers' CI baselines, on KVM hosts (theirs, a reference, not a target here): about 122-127 MB per container " +
        '(hypervisor + virtiofsd + shim PSS)',
    },
    // The stages sandbox.ts, boot-stages.ts and the engine log (a unit test holds the guest's stage names together).
    vmStart: {
      phases: [
        { phase: "the pod's network: its interfaces read, a tap for each", stages: ['vmm.read-network', 'vmm.connect-taps'] },
        { phase: 'VMM start: QEMU launched until the VM is set up (it daemonizes)', stages: ['vmm.qemu-start'] },
        {
          phase: "firmware and kernel loading, until the guest kernel's clock starts",
          stages: ['vmm.agent-ready'],
          minus: ['vmm.guest-boot'],
        },
        {
          phase: 'kernel boot: the guest kernel and its initramfs, until /init has mounted the root image',
          stages: ['vmm.guest-boot'],
          minus: ['vmm.agent-start'],
        },
        { phase: "agent ready: the agent's Node.js starting, until it answered the host's first Check", stages: ['vmm.agent-start'] },
        { phase: 'the pod set up in the guest (names, files, namespaces, network, clock)', stages: ['vmm.setup-sandbox'] },
        { phase: 'container created (Task Create: its rootfs shared, runc create in the guest)', stages: ['task.create'] },
        { phase: 'container started (Task Start)', stages: ['task.start'] },
      ],
      readyRecord: { msg: 'VM ready', accelField: 'accel' },
      anchor:
        "Kata Containers' CI baselines, on KVM hosts (theirs, a reference, not a target here): about 0.39 s (Cloud Hypervisor) " +
        'and 0.71 s (QEMU) from boot to workload',
    },
    // warm-vm.ts and warm-pool.ts: a warm VM's name, its directory and its log records (a unit test holds them together).
    warmPool: {
      size: BENCH_WARM_POOL,
      coldPod: {
        memoryLimitMib: POOL_VM_MEMORY_MIB + 1,
        why:
          `a pod whose memory limit is ${POOL_VM_MEMORY_MIB + 1} MiB, 1 MiB more than a warm VM's (\`default_memory_mib\`, ${POOL_VM_MEMORY_MIB} MiB): ` +
          "the pool cannot serve it and kuasard boots its VM, as it boots every pod's without a pool (its log says why: 'the VM boots cold'); " +
          'a guest with 1 MiB more RAM boots no slower',
      },
      idleDir: '.warm',
      argumentPrefix: 'kuasar-vmm-warm-',
      readyRecord: { msg: 'warm VM ready', idField: 'warmVm' },
      claimedField: 'warmVm',
      phases: [
        { phase: "the pod's network: its interfaces read", stages: ['vmm.read-network'] },
        {
          phase: "claim: the warm VM's files moved into the sandbox, its tap into the pod's network namespace, QEMU into the pod's cgroup",
          stages: ['vmm.claim-warm'],
        },
        {
          phase: "the pod set up in the guest (names, files, namespaces; the network: the pod's addresses and MAC on the VM's NIC; clock)",
          stages: ['vmm.setup-sandbox'],
        },
        { phase: 'container created (Task Create: its rootfs shared, runc create in the guest)', stages: ['task.create'] },
        { phase: 'container started (Task Start)', stages: ['task.start'] },
      ],
    },
  },
});
