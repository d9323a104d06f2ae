// `events --stats <id>`: one JSON object, `{"type":"stats","id":"<id>","data":{...}}`, in runc's
// layout (runc/types/events.go), which runsc copies for the part it fills (runsc/boot/events.go:
// cpu usage, memory usage, pids, network interfaces). The counters are 64-bit, beyond what a JS
// number holds exactly (a memory limit of "unlimited" is 2^63 rounded to a page), so they are
// read as bigint. Go leaves zero figures out (omitempty); a figure left out reads as 0n.

import { internal } from '../base/errors.js';

export interface MemoryEntryStats {
  limit: bigint;
  usage: bigint;
  max: bigint;
  failcnt: bigint;
}

export interface NetworkInterfaceStats {
  name: string;
  rxBytes: bigint;
  rxPackets: bigint;
  rxErrors: bigint;
  rxDropped: bigint;
  txBytes: bigint;
  txPackets: bigint;
  txErrors: bigint;
  txDropped: bigint;
}

export interface ContainerStats {
  cpu: {
    /** Nanoseconds. */
    usage: { total: bigint; kernel: bigint; user: bigint; perCpu: bigint[] };
    /** runc only (from the cgroup); runsc reports none. */
    throttling: { periods: bigint; throttledPeriods: bigint; throttledTime: bigint };
  };
  memory: {
    cache: bigint;
    usage: MemoryEntryStats;
    swap: MemoryEntryStats;
    kernel: MemoryEntryStats;
    kernelTcp: MemoryEntryStats;
    /** The cgroup's memory.stat counters by their file names (runc only). */
    raw: Record<string, bigint>;
  };
  pids: { current: bigint; limit: bigint };
  networkInterfaces: NetworkInterfaceStats[];
}

/**
 * `json` with every integer literal outside strings turned into a string, so that JSON.parse
 * keeps its digits (Node 20's JSON.parse cannot hand a reviver the source text).
 */
export function quoteIntegers(json: string): string {
  const number = /-?\d+(\.\d+)?([eE][+-]?\d+)?/y;
  let out = '';
  let i = 0;
  while (i < json.length) {
    const char = json[i]!;
    if (char === '"') {
      const end = stringEnd(json, i);
      out += json.slice(i, end);
      i = end;
      continue;
    }
    number.lastIndex = i;
    const literal = number.exec(json);
    if (literal) {
      const integer = literal[1] === undefined && literal[2] === undefined;
      out += integer ? `"${literal[0]}"` : literal[0];
      i += literal[0].length;
      continue;
    }
    out += char;
    i++;
  }
  return out;
}

/** The index just past the string literal that opens at `start`. */
function stringEnd(json: string, start: number): number {
  let i = start + 1;
  while (i < json.length && json[i] !== '"') i += json[i] === '\\' ? 2 : 1;
  return i + 1;
}

type Json = Record<string, unknown>;

function objectAt(value: unknown): Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Json) : {};
}

/** A counter as quoteIntegers left it (a digit string), or 0n when absent. */
function counter(value: unknown, field: string): bigint {
  if (value === undefined || value === null) return 0n;
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return BigInt(value);
  throw internal(`runtime stats: ${field} is not an integer: ${JSON.stringify(value)}`);
}

function counters(value: unknown, field: string): bigint[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw internal(`runtime stats: ${field} is not a list`);
  return value.map((item, index) => counter(item, `${field}[${index}]`));
}

function memoryEntry(value: unknown, field: string): MemoryEntryStats {
  const entry = objectAt(value);
  return {
    limit: counter(entry['limit'], `${field}.limit`),
    usage: counter(entry['usage'], `${field}.usage`),
    max: counter(entry['max'], `${field}.max`),
    failcnt: counter(entry['failcnt'], `${field}.failcnt`),
  };
}

/** Go marshals runc's NetworkInterface without tags: the fields keep their Go names. */
function networkInterface(value: unknown, index: number): NetworkInterfaceStats {
  const link = objectAt(value);
  const field = (name: string): bigint => counter(link[name], `network_interfaces[${index}].${name}`);
  return {
    name: typeof link['Name'] === 'string' ? link['Name'] : '',
    rxBytes: field('RxBytes'),
    rxPackets: field('RxPackets'),
    rxErrors: field('RxErrors'),
    rxDropped: field('RxDropped'),
    txBytes: field('TxBytes'),
    txPackets: field('TxPackets'),
    txErrors: field('TxErrors'),
    txDropped: field('TxDropped'),
  };
}

/** The stats event `events --stats <id>` prints for container `id`. */
export function parseStatsEvent(output: string, id: string): ContainerStats {
  let event: Json;
  try {
    event = objectAt(JSON.parse(quoteIntegers(output)));
  } catch {
    event = {};
  }
  if (event['type'] !== 'stats' || event['id'] !== id || typeof event['data'] !== 'object') {
    throw internal(`unrecognised runtime events output: ${JSON.stringify(output.slice(0, 200))}`);
  }
  const data = objectAt(event['data']);
  const cpu = objectAt(data['cpu']);
  const usage = objectAt(cpu['usage']);
  const throttling = objectAt(cpu['throttling']);
  const memory = objectAt(data['memory']);
  const pids = objectAt(data['pids']);
  const links = data['network_interfaces'];
  return {
    cpu: {
      usage: {
        total: counter(usage['total'], 'cpu.usage.total'),
        kernel: counter(usage['kernel'], 'cpu.usage.kernel'),
        user: counter(usage['user'], 'cpu.usage.user'),
        perCpu: counters(usage['percpu'], 'cpu.usage.percpu'),
      },
      throttling: {
        periods: counter(throttling['periods'], 'cpu.throttling.periods'),
        throttledPeriods: counter(throttling['throttledPeriods'], 'cpu.throttling.throttledPeriods'),
        throttledTime: counter(throttling['throttledTime'], 'cpu.throttling.throttledTime'),
      },
    },
    memory: {
      cache: counter(memory['cache'], 'memory.cache'),
      usage: memoryEntry(memory['usage'], 'memory.usage'),
      swap: memoryEntry(memory['swap'], 'memory.swap'),
      kernel: memoryEntry(memory['kernel'], 'memory.kernel'),
      kernelTcp: memoryEntry(memory['kernelTCP'], 'memory.kernelTCP'),
      raw: Object.fromEntries(Object.entries(objectAt(memory['raw'])).map(([name, value]) => [name, counter(value, `memory.raw.${name}`)])),
    },
    pids: { current: counter(pids['current'], 'pids.current'), limit: counter(pids['limit'], 'pids.limit') },
    networkInterfaces: Array.isArray(links) ? links.map(networkInterface) : [],
  };
}
