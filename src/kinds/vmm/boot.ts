// A VM's files, its command line and its boot, the same for a pod's own VM (sandbox.ts) and for a
// warm VM booted before any pod asked (warm-pool.ts): QEMU launched into a cgroup (and a network
// namespace), then the agent's first answer awaited.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { CheckResponse } from '../../api/kuasar/agent/v1/agent_pb.js';
import { timed } from '../../base/stages.js';
import { imagePaths } from '../../guest/image/layout.js';
import { timedAgentReady } from './boot-stages.js';
import { AgentChannel } from './channel.js';
import { BASE_KERNEL_PARAMS, type VmLayout } from './qemu-args.js';
import type { VmmEnvironment } from './environment.js';
import { GUEST_SHARE } from './share.js';
import type { VmSize } from './vm-cgroup.js';
import { Vm } from './vm.js';

/** The virtio-serial port the agent serves on, by its name in the guest. */
const AGENT_PORT_NAME = 'agent.0';

/** The files of a VM in its directory (short names: they are unix socket paths). */
export function vmFiles(dir: string) {
  return {
    agentSocket: join(dir, 'agent'),
    qmpSocket: join(dir, 'qmp'),
    pidFile: join(dir, 'qemu.pid'),
    consoleLog: join(dir, 'console.log'),
    shareDir: join(dir, 'shared'),
  };
}

export type VmFiles = ReturnType<typeof vmFiles>;

/** What QEMU keeps open by path, moved with a warm VM into its pod's directory (each renamed, QEMU keeps working). */
export const MOVABLE_VM_FILES = [
  'agentSocket',
  'qmpSocket',
  'pidFile',
  'consoleLog',
  'shareDir',
] as const satisfies readonly (keyof VmFiles)[];

/** The command line of a VM named `name` with its files in `files`, of `size`, with `nics`. */
export function vmLayout(
  env: Pick<VmmEnvironment, 'config' | 'accel'>,
  vm: { name: string; files: VmFiles; size: VmSize; nics: VmLayout['nics'] },
): VmLayout {
  const { config, accel } = env;
  const image = imagePaths(config.image_dir);
  return {
    name: vm.name,
    machine: config.machine,
    accel,
    ...vm.size,
    kernel: image.kernel,
    initrd: image.initrd,
    rootImage: image.rootfs,
    kernelParams: [
      ...BASE_KERNEL_PARAMS,
      `kuasar.agent_port=${AGENT_PORT_NAME}`,
      `kuasar.log_level=${config.agent_log_level}`,
      ...config.kernel_params,
    ],
    nics: vm.nics,
    share: { dir: vm.files.shareDir, tag: GUEST_SHARE.tag },
    agent: { portName: AGENT_PORT_NAME, socket: vm.files.agentSocket },
    qmpSocket: vm.files.qmpSocket,
    consoleLog: vm.files.consoleLog,
    pidFile: vm.files.pidFile,
  };
}

export interface BootOptions {
  env: Pick<VmmEnvironment, 'config' | 'reaper'>;
  /** The network namespace QEMU runs in ('' for the host's). */
  netnsPath: string;
  cgroupsPath: string;
  /** How long the agent may take to answer once QEMU runs. */
  timeoutMs: number;
  log: Logger;
  /** Told of the VM as soon as QEMU runs, before its agent answers: whoever must end it on failure knows it. */
  launched: (vm: Vm) => void;
}

/** Launches QEMU for `layout` and waits for the agent's first answer, each a stage. The caller ends the VM when it fails. */
export async function bootVm(layout: VmLayout, options: BootOptions): Promise<{ vm: Vm; channel: AgentChannel; check: CheckResponse }> {
  const { env, log } = options;
  const vm = await timed(log, 'vmm.qemu-start', () =>
    Vm.launch(layout, { qemu: env.config.qemu, netnsPath: options.netnsPath, cgroupsPath: options.cgroupsPath, reaper: env.reaper, log }),
  );
  options.launched(vm);
  const { channel, check } = await timedAgentReady(log, layout.consoleLog, () =>
    AgentChannel.open(layout.agent.socket, {
      timeoutMs: options.timeoutMs,
      vmEnded: vm.ended,
      describeEnd: () => `the guest's console is in ${layout.consoleLog}`,
    }),
  );
  return { vm, channel, check };
}

/** The last lines the guest printed on its console, for a log line about a VM that failed. */
export async function consoleTail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-10).join('\n');
}
