// What the vmm kind shares with each of its pods, and what a pod sees of the warm pool: the
// contracts between kind.ts, sandbox.ts and the pool (warm-pool.ts, warm-vm.ts), in a module of
// their own so that none of those imports another for its types.
import type { SandboxRecord } from '../../base/model.js';
import type { KeptDescriptors } from '../../linux/fd-keeper.js';
import type { Reaper } from '../../linux/reaper.js';
import type { AgentChannel } from './channel.js';
import type { VmmConfig } from './config.js';
import type { GuestClocks } from './guest-clocks.js';
import type { PodInterface } from './network.js';
import type { VmSize } from './vm-cgroup.js';
import type { Vm } from './vm.js';

export interface VmmEnvironment {
  config: VmmConfig;
  /** The accelerator the kind chose at start (a KVM probe, or the configuration). */
  accel: 'kvm' | 'tcg';
  reaper: Reaper;
  /** Keeps each running guest's clock on the host's. */
  clocks: GuestClocks;
  /** Where the stdio FIFOs of the pods' processes are kept open across a restart. */
  kept: KeptDescriptors;
  /** VMs booted ahead of their pods (warm_pool > 0). */
  pool?: WarmVmPool;
}

/** The warm pool as a pod's Start uses it. */
export interface WarmVmPool {
  /** Every warm VM's size: a pod fits when it needs no more. */
  readonly size: VmSize;
  /** A ready VM, or undefined when there is none; the pool refills. */
  take(): ClaimableVm | undefined;
  /** Marks a pod's Start as under way (no refill begins meanwhile) until the returned function is called. */
  startUnderWay(): () => void;
}

/** A warm VM a pod has taken from the pool. */
export interface ClaimableVm {
  readonly id: string;
  /** Gives the VM's pieces to the pod of `record` (directory `sandboxDir`), its NIC joined to `nic`. */
  handOver(record: Readonly<SandboxRecord>, sandboxDir: string, nic: PodInterface): Promise<ClaimedVm>;
  /** Ends it, whatever was handed over. */
  end(): Promise<void>;
}

/** What a pod takes over from a warm VM. */
export interface ClaimedVm {
  vm: Vm;
  channel: AgentChannel;
  /** QEMU's name (`-name`): how a restarted kuasard recognises the process. */
  name: string;
  /** The MAC the guest's NIC has until the agent gives it the pod's. */
  guestMac: string;
}
