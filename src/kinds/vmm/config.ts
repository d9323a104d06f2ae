// The vmm kind's `[kinds.vmm]` table: every key with its default. Its own module, so that the
// kind's modules can name the table's type without importing the registration, which loads them.
import * as check from '../../base/schema.js';
import { absolutePath, kindConfigSchema } from '../../config/kind-schema.js';
import { DEFAULT_IMAGE_DIR } from '../../guest/image/layout.js';

/** A kernel parameter: no spaces or quotes (each is one word of the command line). */
const kernelParam = check.string().regex(/^[^\s"']+$/, 'must be one kernel parameter without spaces or quotes');

export const vmmConfigSchema = kindConfigSchema.extend({
  /** The QEMU system emulator: a name on PATH or an absolute path. */
  qemu: check.string().min(1).default('qemu-system-x86_64'),
  /** QEMU's machine type. */
  machine: check
    .string()
    .regex(/^[a-z0-9.-]+$/)
    .default('q35'),
  /** kvm: fail unless KVM works; tcg: emulate; auto: KVM when a probe shows it works, else TCG with a warning. */
  accel: check.oneOf(['auto', 'kvm', 'tcg']).default('auto'),
  /** The guest image (kernel, initramfs, root image): `kuasar image build` makes it. */
  image_dir: absolutePath.default(DEFAULT_IMAGE_DIR),
  /** vCPUs of a pod without a CPU limit; a pod with one gets its limit rounded up. */
  default_vcpus: check.number().int().min(1).max(64).default(1),
  /** Memory of a pod without a memory limit, in MiB; a pod with one gets its limit. */
  default_memory_mib: check.number().int().min(64).default(256),
  /** Added to every pod's memory for the guest kernel and the agent, in MiB. */
  memory_overhead_mib: check.number().int().min(0).default(160),
  /**
   * QEMU's own memory on the host besides the guest's RAM, in MiB (under TCG, its translation
   * buffer comes on top): a VM is sized so that both fit under the memory limit of the pod's
   * cgroup (see vm-cgroup.ts).
   */
  qemu_overhead_mib: check.number().int().min(0).default(160),
  /** More kernel parameters, appended to kuasar's own. */
  kernel_params: check.array(kernelParam).default([]),
  /** How the sandbox's shared directory reaches the guest. (virtio-fs is not supported yet.) */
  share_fs: check.oneOf(['9p']).default('9p'),
  /** How long a VM may take from QEMU's start until its agent answers. */
  boot_timeout_ms: check.number().int().min(1000).default(60_000),
  /**
   * After a restart of kuasard, how long a running VM's agent may take to answer again before the
   * VM is taken for lost: it is ended and its pod reported not ready.
   */
  reconnect_timeout_ms: check.number().int().min(1000).default(10_000),
  /** How long Stop waits for QEMU to end after asking it to quit, before killing it. */
  stop_timeout_ms: check.number().int().min(100).default(5_000),
  /**
   * Each guest's wall clock is set to the host's at least this often, in seconds (it drifts under
   * emulation); a jump of the host's clock (a resume from suspend) syncs every guest at once.
   * 0: only at boot and on jumps.
   */
  clock_sync_interval_s: check.number().int().min(0).default(60),
  /**
   * VMs kept booted, their agents answering, for no pod yet (warm-pool.ts): a pod that fits one
   * (default_vcpus and default_memory_mib, or less) is given one at Start instead of booting its
   * own. 0: no pool, every pod boots its VM.
   */
  warm_pool: check.number().int().min(0).max(64).default(0),
  /**
   * The most host memory the pool's idle VMs may hold together, in MiB (each counted by its QEMU's
   * resident memory, or its size while it boots): the pool is smaller when they would hold more.
   */
  warm_pool_max_memory_mib: check.number().int().min(0).default(2048),
  /**
   * The host's available memory (MemAvailable) below which the pool gives its VMs back, one per
   * health check, and boots no more, in MiB.
   */
  warm_pool_min_host_available_mib: check.number().int().min(0).default(1024),
  /** The cgroup (cgroupfs path) below which each warm VM runs until a pod claims it, at the least CPU weight. */
  warm_pool_cgroup_parent: check
    .string()
    .regex(/^(\/[A-Za-z0-9_.-]+)+$/, 'must be an absolute cgroupfs path such as /kuasar-vmm-warm')
    .default('/kuasar-vmm-warm'),
  /**
   * How long after a pod's Start the pool waits before it boots a VM, in ms: the pod's containers
   * are created and started next, and a boot beside them slows them down (under emulation, much).
   */
  warm_pool_refill_delay_ms: check.number().int().min(0).default(5_000),
  /** How often each idle VM of the pool is checked (QEMU running, agent answering), in ms. */
  warm_pool_check_interval_ms: check.number().int().min(500).default(10_000),
  /** The guest agent's log level, on the guest's console (the VM's console.log in its sandbox directory). */
  agent_log_level: check.oneOf(['debug', 'info', 'warn', 'error']).default('info'),
});

export type VmmConfig = check.Infer<typeof vmmConfigSchema>;
