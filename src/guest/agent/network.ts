// The pod's network inside the guest. Each NIC of the VM carries the traffic of one interface of
// the pod's network namespace on the host (a tap joined to it by tc redirects), with that
// interface's MAC (a warm VM's NIC gets it only here: it booted before its pod existed): here it
// is found by its MAC and given the host interface's name, MTU and addresses, then the routes.
// busybox `ip` does the work, all of it in one shell: it is in the root image, and these are a
// handful of calls once per VM. Only in a VM: the agent run on a host for tests must not touch
// the host's network.
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { failedPrecondition, invalidArgument } from '../../base/errors.js';

const run = promisify(execFile);

export interface GuestInterface {
  name: string;
  mac: string;
  mtu: number;
  addresses: readonly string[];
  /** The NIC's MAC now, when it must change to `mac` (a warm VM's); '' when it already has `mac`. */
  guestMac: string;
}

export interface GuestRoute {
  destination: string;
  gateway: string;
  device: string;
  family: number;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
/** An address or prefix as ip(8) takes it: IPv4 or IPv6, with an optional prefix length. */
const PREFIX = /^[0-9A-Fa-f.:]+(\/\d{1,3})?$/;

/** Checks what the host sent before any of it reaches a command line. */
export function checkNetwork(interfaces: readonly GuestInterface[], routes: readonly GuestRoute[]): void {
  for (const nic of interfaces) {
    if (!IFNAME.test(nic.name)) throw invalidArgument(`interface name ${JSON.stringify(nic.name)} is not a valid link name`);
    for (const mac of nic.guestMac ? [nic.mac, nic.guestMac] : [nic.mac]) {
      if (!MAC.test(mac.toLowerCase())) throw invalidArgument(`interface ${nic.name}: MAC ${JSON.stringify(mac)} is not valid`);
    }
    if (nic.mtu !== 0 && (nic.mtu < 68 || nic.mtu > 65535)) throw invalidArgument(`interface ${nic.name}: MTU ${nic.mtu} is out of range`);
    for (const address of nic.addresses) {
      if (!PREFIX.test(address) || !address.includes('/'))
        throw invalidArgument(`interface ${nic.name}: address ${JSON.stringify(address)} needs a prefix length`);
    }
  }
  for (const route of routes) {
    if (route.destination !== 'default' && !PREFIX.test(route.destination))
      throw invalidArgument(`route to ${JSON.stringify(route.destination)} is not valid`);
    if (route.gateway && !PREFIX.test(route.gateway)) throw invalidArgument(`route gateway ${JSON.stringify(route.gateway)} is not valid`);
    if (!IFNAME.test(route.device)) throw invalidArgument(`route device ${JSON.stringify(route.device)} is not a valid link name`);
    if (route.family !== 4 && route.family !== 6) throw invalidArgument(`route family ${route.family} is neither 4 nor 6`);
  }
}

/** The guest's links by MAC address. */
async function linksByMac(): Promise<Map<string, string>> {
  const links = new Map<string, string>();
  for (const name of await readdir('/sys/class/net')) {
    const mac = (await readFile(`/sys/class/net/${name}/address`, 'utf8').catch(() => '')).trim().toLowerCase();
    if (mac) links.set(mac, name);
  }
  return links;
}

/**
 * The `ip` commands that set the network up, in order: names, MACs, MTUs, addresses, links up,
 * then the routes. Every value was checked by checkNetwork: none holds a character a shell reads
 * (they are words of the letters, digits and `:./_-` the patterns allow).
 */
export function networkCommands(
  interfaces: readonly GuestInterface[],
  routes: readonly GuestRoute[],
  linkOf: (nic: GuestInterface) => string,
): string[] {
  const commands = ['ip link set lo up'];
  for (const nic of interfaces) {
    const link = linkOf(nic);
    if (link !== nic.name) commands.push(`ip link set dev ${link} name ${nic.name}`);
    // The frames the host's side sends it are addressed to the host interface's MAC.
    if (nic.guestMac && nic.guestMac.toLowerCase() !== nic.mac.toLowerCase())
      commands.push(`ip link set dev ${nic.name} address ${nic.mac}`);
    if (nic.mtu) commands.push(`ip link set dev ${nic.name} mtu ${nic.mtu}`);
    for (const address of nic.addresses) commands.push(`ip addr add ${address} dev ${nic.name}`);
    commands.push(`ip link set dev ${nic.name} up`);
  }
  for (const route of routes) {
    const via = route.gateway ? ` via ${route.gateway}` : '';
    commands.push(`ip -${route.family} route replace ${route.destination}${via} dev ${route.device}`);
  }
  return commands;
}

export async function setUpNetwork(
  interfaces: readonly GuestInterface[],
  routes: readonly GuestRoute[],
  isGuestInit: boolean,
): Promise<void> {
  checkNetwork(interfaces, routes);
  if (!isGuestInit) throw failedPrecondition("the agent sets up a network only as a VM's init");
  const links = await linksByMac();
  const linkOf = (nic: GuestInterface) => {
    const found = nic.guestMac || nic.mac;
    const link = links.get(found.toLowerCase());
    if (!link) throw failedPrecondition(`interface ${nic.name}: the guest has no NIC with MAC ${found}`);
    return link;
  };
  // One shell for all of them: each process the agent spawns costs a fork of Node, which under
  // emulation (TCG) takes a good part of a second; a shell forks busybox cheaply.
  const script = networkCommands(interfaces, routes, linkOf).join('\n');
  await run('sh', ['-e', '-c', script]).catch((err: { stderr?: string; message: string }) => {
    throw failedPrecondition(`set up the network: ${err.stderr?.trim() || err.message}`);
  });
}
