// Whether KVM really works here, found by running a guest rather than by looking for /dev/kvm:
// under nested virtualisation /dev/kvm may open and a vCPU then never runs. The probe boots a
// 64 KiB firmware of five instructions that writes to QEMU's isa-debug-exit port: QEMU exits
// with status (1 << 1) | 1 = 3 at once when the vCPU ran, and a hang is ended by a time-out.
// The answer holds until the host boots again: kept in a file, a restarted kuasard does not pay
// the probe (up to its whole time-out where KVM hangs) again.
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** The probe firmware: `mov al, 1; out 0xf4, al; hlt; jmp $` at the x86 reset vector (0xFFFF0), hlt everywhere else. */
export function probeFirmware(): Buffer {
  const firmware = Buffer.alloc(64 * 1024, 0xf4);
  Buffer.from([0xb0, 0x01, 0xe6, 0xf4, 0xf4, 0xeb, 0xfe]).copy(firmware, 0xfff0);
  return firmware;
}

/** QEMU's exit status when the probe firmware wrote 1 to isa-debug-exit. */
const FIRMWARE_RAN_STATUS = 3;

export type AccelProbe = { works: true; ms: number } | { works: false; reason: string };

/** What a probe found, for this boot of the host and this QEMU. */
interface ProbeRecord {
  bootId: string;
  qemu: string;
  accel: string;
  result: AccelProbe;
}

/**
 * The answer of `probeAccel` for this boot of the host: read from `dir` when an earlier run of
 * kuasard probed with the same QEMU, else probed and kept there. `cached` says which.
 */
export async function probeAccelOncePerBoot(
  qemu: string,
  accel: string,
  dir: string,
  timeoutMs: number,
): Promise<AccelProbe & { cached: boolean }> {
  const bootId = (await readFile('/proc/sys/kernel/random/boot_id', 'utf8')).trim();
  const file = join(dir, `${accel}-probe.json`);
  // None yet, or unreadable: probed again.
  const kept = await readFile(file, 'utf8')
    .then((text) => JSON.parse(text) as ProbeRecord)
    .catch(() => undefined);
  if (kept?.bootId === bootId && kept.qemu === qemu && kept.accel === accel) return { ...kept.result, cached: true };
  const result = await probeAccel(qemu, accel, dir, timeoutMs);
  const record: ProbeRecord = { bootId, qemu, accel, result };
  await writeFile(file, JSON.stringify(record));
  return { ...result, cached: false };
}

/** Runs the probe firmware under `accel` (kvm, tcg) with `qemu`; `dir` receives the firmware file. */
export async function probeAccel(qemu: string, accel: string, dir: string, timeoutMs: number): Promise<AccelProbe> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const firmware = join(dir, 'probe-firmware.bin');
  await writeFile(firmware, probeFirmware());
  const args = ['-machine', 'pc', '-accel', accel, '-nodefaults', '-no-user-config', '-display', 'none', '-m', '16'];
  args.push('-bios', firmware, '-device', 'isa-debug-exit,iobase=0xf4,iosize=0x04');
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(qemu, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-2000);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ works: false, reason: `${qemu}: ${err.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === FIRMWARE_RAN_STATUS) resolve({ works: true, ms: performance.now() - started });
      else if (signal === 'SIGKILL') resolve({ works: false, reason: `no vCPU ran within ${timeoutMs} ms (nested ${accel} hangs?)` });
      else resolve({ works: false, reason: stderr.trim().split('\n').pop() || `QEMU exited with ${code ?? signal}` });
    });
  });
}
