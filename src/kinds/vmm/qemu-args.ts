// The QEMU command line of one pod's VM, from what the kind decided about it. Pure, so that a
// unit test can read it. The VM has no firmware menu, display or default devices: a kernel and
// initramfs booted directly, the read-only root image on virtio-blk (one file on the host for
// every VM, whose page cache they all share), the sandbox's directory over 9p, the agent's
// virtio-serial port on a unix socket, QMP on another, and the serial console into a file.
export interface VmLayout {
  /** Names the VM in `ps` and QEMU's own messages. */
  name: string;
  machine: string;
  accel: 'kvm' | 'tcg';
  vcpus: number;
  memoryMib: number;
  kernel: string;
  initrd: string;
  rootImage: string;
  kernelParams: readonly string[];
  /** The VM's NICs: each a tap in the pod's network namespace, with the MAC the guest's NIC gets. */
  nics: readonly { tap: string; mac: string }[];
  /** The sandbox's shared directory and the tag the guest mounts it by. */
  share: { dir: string; tag: string };
  /** The agent's virtio-serial port: its name in the guest and the host socket QEMU listens on. */
  agent: { portName: string; socket: string };
  qmpSocket: string;
  consoleLog: string;
  pidFile: string;
}

/** The guest's own kernel parameters, before the agent's and the configured ones. */
export const BASE_KERNEL_PARAMS: readonly string[] = [
  'console=ttyS0',
  // A kernel panic (the agent, PID 1, died) powers the VM off at once: with -no-reboot QEMU exits.
  'panic=-1',
  'reboot=t',
  'quiet',
  // The root image is read-only and /init mounts it; nothing probes for a keyboard or a mouse.
  'i8042.noaux',
  'i8042.nomux',
  'i8042.nopnp',
  'i8042.dumbkbd',
  // TCG's clocks are slow to calibrate and never drift enough to matter in a pod's VM.
  'tsc=reliable',
  'no_timer_check',
];

/**
 * TCG's translation buffer, in MiB. QEMU's default is 1 GiB, which a long-lived guest fills (and
 * keeps resident) as it runs new code: QEMU's memory would grow far past the VM's size, into the
 * pod's memory limit (vm-cgroup.ts). 64 MiB holds what a guest's boot translates, and booted no
 * slower here than the default.
 */
export const TCG_TRANSLATION_BUFFER_MIB = 64;

/** A value inside a QEMU `key=value,...` option: a comma is written twice there. */
const opt = (value: string): string => value.replaceAll(',', ',,');

export function qemuArgs(vm: VmLayout): string[] {
  const cpu = vm.accel === 'kvm' ? 'host' : 'max';
  return [
    ['-name', `${vm.name},debug-threads=on`],
    ['-machine', vm.machine],
    ['-accel', vm.accel === 'tcg' ? `tcg,tb-size=${TCG_TRANSLATION_BUFFER_MIB}` : 'kvm'],
    ['-cpu', cpu],
    ['-smp', String(vm.vcpus)],
    ['-m', `${vm.memoryMib}M`],
    ['-nodefaults', '-no-user-config', '-no-reboot', '-display', 'none'],
    // QEMU returns once the VM is set up (a bad option or file fails here, with its message).
    ['-daemonize', '-pidfile', vm.pidFile],
    ['-kernel', vm.kernel, '-initrd', vm.initrd, '-append', vm.kernelParams.join(' ')],
    ['-drive', `if=none,id=root,file=${opt(vm.rootImage)},format=raw,readonly=on`, '-device', 'virtio-blk-pci,drive=root'],
    // The share spans many host file systems (each rootfs and volume): remap keeps their inode
    // numbers from colliding in the guest.
    ['-fsdev', `local,id=share,path=${opt(vm.share.dir)},security_model=passthrough,multidevs=remap`],
    ['-device', `virtio-9p-pci,fsdev=share,mount_tag=${vm.share.tag}`],
    vm.nics
      .flatMap((nic, i) => [
        ['-netdev', `tap,id=net${i},ifname=${nic.tap},script=no,downscript=no`],
        ['-device', `virtio-net-pci,netdev=net${i},mac=${nic.mac}`],
      ])
      .flat(),
    ['-device', 'virtio-serial-pci,id=serial0'],
    ['-chardev', `socket,id=agent,path=${opt(vm.agent.socket)},server=on,wait=off`],
    ['-device', `virtserialport,chardev=agent,name=${vm.agent.portName}`],
    ['-chardev', `socket,id=qmp,path=${opt(vm.qmpSocket)},server=on,wait=off`, '-mon', 'chardev=qmp,mode=control'],
    ['-serial', `file:${vm.consoleLog}`],
  ].flat();
}
