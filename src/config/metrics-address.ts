// Where kuasard serves its Prometheus metrics (`metrics_address`): a unix socket, or a TCP port on
// a loopback address only. The endpoint has no authentication and names every pod of the node,
// so it is never offered to the network; a scraper elsewhere reaches it through a proxy.
import { isIPv4, isIPv6 } from 'node:net';

export type MetricsAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

const UNIX_PREFIX = 'unix://';
const FORMS = '"unix:///<absolute path>", "127.0.0.1:<port>" or "[::1]:<port>"';

/** Parses a `metrics_address`; an Error that names the accepted forms otherwise. */
export function parseMetricsAddress(text: string): MetricsAddress {
  if (text.startsWith(UNIX_PREFIX)) {
    const path = text.slice(UNIX_PREFIX.length);
    if (!path.startsWith('/')) throw new Error(`"${text}": a unix socket needs an absolute path (${FORMS})`);
    return { kind: 'unix', path };
  }
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!match) throw new Error(`"${text}" is not an address: use ${FORMS}`);
  const host = match[1] ?? match[2]!;
  const port = Number(match[3]);
  if (port < 1 || port > 65535) throw new Error(`"${text}": port ${port} is out of range (1-65535)`);
  if (match[1] !== undefined ? !isIPv6(host) : !isIPv4(host)) throw new Error(`"${text}": "${host}" is not an IP address (${FORMS})`);
  if (!isLoopback(host)) throw new Error(`"${text}": metrics are served on a loopback address only (${FORMS})`);
  return { kind: 'tcp', host, port };
}

function isLoopback(ip: string): boolean {
  return isIPv4(ip) ? ip.startsWith('127.') : ip === '::1' || ip === '0:0:0:0:0:0:0:1';
}
