// Whether the vmm kind can run here: QEMU answers, the guest image is complete, the pod network's
// taps can be made, and (in `kuasar doctor`) which accelerator VMs get: KVM only when a probe
// guest really runs on it within a time-out (the answer kept for this boot, shared with kuasard),
// else TCG, itself probed. kuasard chooses the accelerator as the kind starts (kind.ts), with
// the same cached probe; its check is left to that.
import { access } from 'node:fs/promises';
import { type CheckContext, type CheckResult, fail, findExecutable, ok, runForCheck, skipped, warn } from '../../kind-api/checks.js';
import { checkImageDir, readManifest } from '../../guest/image/layout.js';
import { probeAccel, probeAccelOncePerBoot } from './accel-probe.js';
import type { VmmConfig } from './config.js';
import { KVM_PROBE_TIMEOUT_MS } from './kind.js';

const VERSION_TIMEOUT_MS = 5_000;
/** A TCG probe boots no kernel: it ends in well under a second, even on a busy host. */
const TCG_PROBE_TIMEOUT_MS = 10_000;
const TUN_DEVICE = '/dev/net/tun';
/** What network.ts runs to join a pod's interfaces to its VM's taps. */
const NETWORK_TOOLS = ['ip', 'tc'];

export async function vmmChecks(config: VmmConfig, context: CheckContext): Promise<CheckResult[]> {
  const qemu = await qemuCheck(config.qemu, context);
  const accel = qemu.status === 'fail' ? skipped('accelerator', 'no QEMU to probe with') : await accelCheck(config, context);
  return [qemu, accel, await imageCheck(config.image_dir), await networkCheck()];
}

async function qemuCheck(qemu: string, context: CheckContext): Promise<CheckResult> {
  const fix = `install QEMU (apt-get install qemu-system-x86), or set [kinds.vmm] qemu to its path (now "${qemu}")`;
  const binary = await findExecutable(qemu);
  if (!binary) return fail('qemu', `${qemu}: not found${qemu.includes('/') ? '' : ' on PATH'}`, fix);
  // At start the accelerator's probe runs it next (kind.ts), cached for the boot: one spawn less.
  if (context.depth === 'start') return ok('qemu', binary);
  const answer = await runForCheck(binary, ['--version'], VERSION_TIMEOUT_MS);
  if (!answer.ok) return fail('qemu', `${binary} --version: ${answer.why}`, fix);
  return ok('qemu', `${answer.stdout.split('\n')[0]?.trim()} (${binary})`);
}

async function accelCheck(config: VmmConfig, context: CheckContext): Promise<CheckResult> {
  const name = 'accelerator';
  if (context.depth === 'start') return skipped(name, 'chosen as the kind starts (the KVM probe, kept for this boot)');
  if (config.accel !== 'tcg') {
    const kvm = await probeAccelOncePerBoot(config.qemu, 'kvm', `${context.kindDir}.probe`, KVM_PROBE_TIMEOUT_MS);
    const how = kvm.cached ? 'probed earlier in this boot' : 'probed now';
    if (kvm.works) return ok(name, `KVM: a probe guest ran on it (${how})`);
    const fixKvm = 'give the host a working /dev/kvm (load kvm_intel or kvm_amd; in a VM, nested virtualisation)';
    if (config.accel === 'kvm')
      return fail(name, `accel = "kvm" but KVM does not work here: ${kvm.reason} (${how})`, `${fixKvm}, or set accel = "auto"`);
    const tcg = await probeAccel(config.qemu, 'tcg', context.scratchDir, TCG_PROBE_TIMEOUT_MS);
    if (!tcg.works) return fail(name, `neither KVM (${kvm.reason}) nor TCG (${tcg.reason}) runs a probe guest`, 'reinstall QEMU');
    return warn(name, `TCG: KVM does not work here (${kvm.reason}), VMs run under emulation, many times slower`, fixKvm);
  }
  const tcg = await probeAccel(config.qemu, 'tcg', context.scratchDir, TCG_PROBE_TIMEOUT_MS);
  return tcg.works
    ? ok(name, 'TCG, as accel = "tcg" sets: a probe guest ran')
    : fail(name, `TCG does not run a probe guest: ${tcg.reason}`, 'reinstall QEMU');
}

async function imageCheck(dir: string): Promise<CheckResult> {
  const image = await checkImageDir(dir);
  if (!image.complete) return fail('guest image', `${dir} lacks ${image.missing.join(', ')}`, `build it: ${image.fix}`);
  const manifest = await readManifest(dir).catch(() => undefined);
  return ok('guest image', `${dir}${manifest ? `: kernel ${manifest.kernelRelease}, built ${manifest.builtAt}` : ''}`);
}

async function networkCheck(): Promise<CheckResult> {
  const missing: string[] = [];
  if (
    !(await access(TUN_DEVICE).then(
      () => true,
      () => false,
    ))
  )
    missing.push(TUN_DEVICE);
  for (const tool of NETWORK_TOOLS) if (!(await findExecutable(tool))) missing.push(tool);
  if (missing.length > 0)
    return fail('pod network', `missing ${missing.join(', ')}`, 'install iproute2 and load the tun module (modprobe tun)');
  return ok('pod network', `${TUN_DEVICE}, ${NETWORK_TOOLS.join(' and ')} for the taps`);
}
