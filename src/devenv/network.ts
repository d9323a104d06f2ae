// The environment's pod network on the host: a private 10.x.y.0/24 that no host route covers,
// and the Linux bridge that the CNI bridge plugin attaches pods to. The bridge is made up front
// (with the gateway address), so that it exists before any pod, the subnet is visible in the
// route table to environments that start later, and teardown has one link to delete.
import { randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { run } from './exec.js';

export interface Subnet {
  /** e.g. 10.123.45.0/24 */
  cidr: string;
  /** The bridge's address, e.g. 10.123.45.1 */
  gateway: string;
  prefixLength: number;
}

interface Route {
  dst: string;
}

/** Picks a 10.x.y.0/24 that overlaps no route or address of the host. */
export async function chooseSubnet(): Promise<Subnet> {
  const routes = JSON.parse(await run('ip', ['-j', '-4', 'route', 'show', 'table', 'all'])) as Route[];
  const taken = routes
    .map((r) => r.dst)
    .filter((dst) => dst && dst !== 'default')
    .map(parseCidr);
  for (let attempt = 0; attempt < 100; attempt++) {
    // 10.0.x and 10.255.x are avoided: they are the first and last guesses of other tools.
    const second = randomInt(1, 255);
    const third = randomInt(0, 256);
    const candidate = { base: ipToNumber(`10.${second}.${third}.0`), prefixLength: 24 };
    if (!taken.some((t) => overlaps(t, candidate))) {
      return { cidr: `10.${second}.${third}.0/24`, gateway: `10.${second}.${third}.1`, prefixLength: 24 };
    }
  }
  throw new Error('no free 10.x.y.0/24 subnet found for the pod network');
}

export async function createBridge(name: string, subnet: Subnet): Promise<void> {
  await run('ip', ['link', 'add', 'name', name, 'type', 'bridge']);
  await run('ip', ['addr', 'add', `${subnet.gateway}/${subnet.prefixLength}`, 'dev', name]);
  await run('ip', ['link', 'set', name, 'up']);
}

/** Deletes the bridge (and with it the routes to its subnet); nothing to do when it is gone. */
export async function deleteBridge(name: string): Promise<void> {
  if (existsSync(`/sys/class/net/${name}`)) await run('ip', ['link', 'del', name]);
}

interface Prefix {
  base: number;
  prefixLength: number;
}

function parseCidr(cidr: string): Prefix {
  const [ip = '', length] = cidr.split('/');
  return { base: ipToNumber(ip), prefixLength: length === undefined ? 32 : Number(length) };
}

function overlaps(a: Prefix, b: Prefix): boolean {
  const shortest = Math.min(a.prefixLength, b.prefixLength);
  const mask = shortest === 0 ? 0 : (~0 << (32 - shortest)) >>> 0;
  return (a.base & mask) >>> 0 === (b.base & mask) >>> 0;
}

function ipToNumber(ip: string): number {
  return ip.split('.').reduce((n, octet) => (n * 256 + Number(octet)) >>> 0, 0);
}
