// Check: what runs in the guest, read fresh on each call.
import { readFile } from 'node:fs/promises';
import { release } from 'node:os';

import { AGENT_VERSION } from './version.js';

export interface GuestFacts {
  bootId: string;
  kernelRelease: string;
  agentVersion: string;
  uptimeSeconds: number;
}

export async function guestFacts(): Promise<GuestFacts> {
  const [bootId, uptime] = await Promise.all([readFile('/proc/sys/kernel/random/boot_id', 'utf8'), readFile('/proc/uptime', 'utf8')]);
  return {
    bootId: bootId.trim(),
    kernelRelease: release(),
    agentVersion: AGENT_VERSION,
    uptimeSeconds: Number(uptime.split(' ')[0]),
  };
}
