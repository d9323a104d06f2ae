// The pod's network reaches its VM the way microVM runtimes join them: in the pod's network
// namespace each interface CNI made (a veth) gets a tap of its own, and two tc ingress redirects
// (mirred) pass every frame from the veth to the tap and back. QEMU, started in that namespace,
// opens the tap as a virtio-net NIC with the veth's MAC; the agent gives that NIC the veth's
// name, MTU and addresses, and the namespace's routes (SetupNetwork). The host side of the veth
// keeps its addresses: frames are redirected before its IP stack sees them.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { failedPrecondition } from '../../base/errors.js';

const run = promisify(execFile);

export interface PodInterface {
  /** The veth in the pod's namespace, and the name the guest's NIC gets. */
  name: string;
  mac: string;
  mtu: number;
  /** "address/prefix", global scope only (the guest makes its own link-local ones). */
  addresses: string[];
  /** The tap that carries its frames to and from QEMU. */
  tap: string;
}

export interface PodRoute {
  destination: string;
  gateway: string;
  device: string;
  family: 4 | 6;
}

/** Taps are named by position: a link name has at most 15 characters, an interface's may already use them all. */
export const tapName = (index: number): string => `kuasar-tap${index}`;

interface IpAddrEntry {
  ifname: string;
  link_type?: string;
  address?: string;
  mtu?: number;
  addr_info?: { family: string; local: string; prefixlen: number; scope: string }[];
}

/** The pod's Ethernet interfaces from `ip -j addr show` (its loopback and kuasar's own taps left out). */
export function parseInterfaces(json: string): PodInterface[] {
  const entries = JSON.parse(json) as IpAddrEntry[];
  return entries
    .filter((entry) => entry.link_type === 'ether' && entry.address && !entry.ifname.startsWith('kuasar-tap'))
    .map((entry, index) => ({
      name: entry.ifname,
      mac: entry.address!,
      mtu: entry.mtu ?? 0,
      addresses: (entry.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`),
      tap: tapName(index),
    }));
}

interface IpRouteEntry {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
}

/**
 * The routes the guest needs from `ip -j -<family> route show`: those on the pod's interfaces
 * that the kernel did not make itself from an address (the guest's kernel makes those too).
 */
export function parseRoutes(json: string, family: 4 | 6, interfaces: readonly PodInterface[]): PodRoute[] {
  const names = new Set(interfaces.map((nic) => nic.name));
  return (JSON.parse(json) as IpRouteEntry[])
    .filter((route) => route.dev && names.has(route.dev) && route.protocol !== 'kernel')
    .map((route) => ({ destination: route.dst, gateway: route.gateway ?? '', device: route.dev!, family }));
}

/** `ip -batch` lines that make each interface's tap. */
export function tapCommands(interfaces: readonly Pick<PodInterface, 'tap' | 'mtu'>[]): string[] {
  return interfaces.flatMap((nic) => [`tuntap add dev ${nic.tap} mode tap`, ...tapUpCommands(nic)]);
}

/** `ip -batch` lines that give a tap its interface's MTU and bring it up (a link moved to another namespace arrives down). */
function tapUpCommands(nic: Pick<PodInterface, 'tap' | 'mtu'>): string[] {
  return [...(nic.mtu ? [`link set dev ${nic.tap} mtu ${nic.mtu}`] : []), `link set dev ${nic.tap} up`];
}

/** `tc -batch` lines that redirect every frame between each interface and its tap, both ways. */
export function redirectCommands(interfaces: readonly PodInterface[]): string[] {
  const redirect = (from: string, to: string) => [
    `qdisc add dev ${from} ingress`,
    `filter add dev ${from} parent ffff: protocol all u32 match u8 0 0 action mirred egress redirect dev ${to}`,
  ];
  return interfaces.flatMap((nic) => [...redirect(nic.name, nic.tap), ...redirect(nic.tap, nic.name)]);
}

/** Runs `command` inside the network namespace at `netnsPath`, with `input` on its stdin. */
async function inNetns(netnsPath: string, command: string[], input?: string): Promise<string> {
  const child = run('nsenter', [`--net=${netnsPath}`, '--', ...command]);
  if (input !== undefined) {
    child.child.stdin?.end(input);
  }
  try {
    return (await child).stdout;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw failedPrecondition(`pod network: ${command.join(' ')}: ${stderr || (err as Error).message}`);
  }
}

/** What the pod's namespace holds, read before the VM starts. */
export async function readPodNetwork(netnsPath: string): Promise<{ interfaces: PodInterface[]; routes: PodRoute[] }> {
  // Three reads at once: each is a process of its own, and a pod's start waits for them.
  const [addresses, routes4, routes6] = await Promise.all([
    inNetns(netnsPath, ['ip', '-j', 'addr', 'show']),
    inNetns(netnsPath, ['ip', '-j', '-4', 'route', 'show']),
    inNetns(netnsPath, ['ip', '-j', '-6', 'route', 'show']),
  ]);
  const interfaces = parseInterfaces(addresses);
  return { interfaces, routes: [...parseRoutes(routes4, 4, interfaces), ...parseRoutes(routes6, 6, interfaces)] };
}

/** Makes the taps and the redirects; undone by `disconnectTaps`. */
export async function connectTaps(netnsPath: string, interfaces: readonly PodInterface[]): Promise<void> {
  if (interfaces.length === 0) return;
  await inNetns(netnsPath, ['ip', '-batch', '-'], `${tapCommands(interfaces).join('\n')}\n`);
  await inNetns(netnsPath, ['tc', '-batch', '-'], `${redirectCommands(interfaces).join('\n')}\n`);
}

/**
 * Joins a tap made elsewhere to the pod's interface `nic`: a warm VM's, made in its own network
 * namespace at `fromNetnsPath` before the pod existed, whose QEMU keeps its descriptor open as the
 * link moves (warm-pool.ts). It arrives in the pod's namespace under the same name, and is then
 * set up as `connectTaps` sets up a tap it makes.
 */
export async function moveTapToPod(fromNetnsPath: string, podNetnsPath: string, nic: PodInterface): Promise<void> {
  await inNetns(fromNetnsPath, ['ip', 'link', 'set', 'dev', nic.tap, 'netns', podNetnsPath]);
  await inNetns(podNetnsPath, ['ip', '-batch', '-'], `${tapUpCommands(nic).join('\n')}\n`);
  await inNetns(podNetnsPath, ['tc', '-batch', '-'], `${redirectCommands([nic]).join('\n')}\n`);
}

/** Makes a tap in the namespace at `netnsPath` for a VM that has no pod yet: its frames go nowhere until it is moved. */
export async function makeLoneTap(netnsPath: string, tap: string): Promise<void> {
  await inNetns(netnsPath, ['ip', '-batch', '-'], `${tapCommands([{ tap, mtu: 0 }]).join('\n')}\n`);
}

/**
 * Removes the taps and the interfaces' ingress qdiscs (their filters go with them). Each step on
 * its own: a namespace CNI already tore down, or a step a failed start never made, is no error.
 */
export async function disconnectTaps(netnsPath: string, interfaces: readonly Pick<PodInterface, 'name' | 'tap'>[]): Promise<void> {
  for (const nic of interfaces) {
    await inNetns(netnsPath, ['ip', 'link', 'del', 'dev', nic.tap]).catch(() => undefined);
    await inNetns(netnsPath, ['tc', 'qdisc', 'del', 'dev', nic.name, 'ingress']).catch(() => undefined);
  }
}
