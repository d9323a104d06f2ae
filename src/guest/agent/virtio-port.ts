// Finds the virtio-serial port the host named (QEMU's `virtserialport,name=agent.0`): the
// kernel lists each port as /sys/class/virtio-ports/vportNpM with its name in a file, and udev
// would make /dev/virtio-ports/<name>; without udev the device is /dev/vportNpM.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { notFound } from '../../base/errors.js';

const PORTS_DIR = '/sys/class/virtio-ports';

/** The device of the port named `name`, or undefined when no such port exists (yet). */
export async function findVirtioPort(name: string, portsDir = PORTS_DIR): Promise<string | undefined> {
  let ports: string[];
  try {
    ports = await readdir(portsDir);
  } catch {
    return undefined;
  }
  for (const port of ports) {
    const portName = await readFile(path.join(portsDir, port, 'name'), 'utf8').catch(() => '');
    if (portName.trim() === name) return path.join('/dev', port);
  }
  return undefined;
}

/**
 * Waits for the port to appear (its driver may probe after the agent starts). Gives up after
 * `timeoutMs`: a VM without its port is of no use, and the error in the console log says why.
 */
export async function waitForVirtioPort(name: string, timeoutMs: number, portsDir = PORTS_DIR): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const device = await findVirtioPort(name, portsDir);
    if (device) return device;
    if (Date.now() >= deadline) throw notFound(`virtio-serial port ${name} (in ${portsDir})`);
    await sleep(50);
  }
}
