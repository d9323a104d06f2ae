// What `kuasar ps` and `kuasar inspect` print for people (with --json they print kuasard's answer
// as it is). Pure functions of the answer and the time now, so that tests need no daemon.
import type { ProcessStatus } from '../base/model.js';
import type {
  ContainerDetails,
  ContainerView,
  Inspected,
  MountView,
  ProcessView,
  PsResponse,
  SandboxDetails,
} from '../daemon/admin-api.js';

/** As crictl shortens ids: `kuasar inspect` takes any unambiguous beginning of one. */
export const SHORT_ID_LENGTH = 13;
const STATUS_ORDER: readonly ProcessStatus[] = ['running', 'created', 'paused', 'stopped'];

export const shortId = (id: string): string => id.slice(0, SHORT_ID_LENGTH);

/** An age as kubectl shows one: 45s, 3m, 5h, 2d. */
export function age(fromIso: string, now: number): string {
  const seconds = Math.max(0, Math.floor((now - Date.parse(fromIso)) / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m`;
  if (seconds < 48 * 3600) return `${Math.floor(seconds / 3600)}h`;
  return `${Math.floor(seconds / 86400)}d`;
}

/** "0", or how many and in which states: "3 (running 2, stopped 1)". */
export function containerCounts(containers: readonly ContainerView[]): string {
  if (containers.length === 0) return '0';
  const counts = STATUS_ORDER.map((status) => [status, containers.filter((c) => c.status === status).length] as const).filter(
    ([, n]) => n > 0,
  );
  return `${containers.length} (${counts.map(([status, n]) => `${status} ${n}`).join(', ')})`;
}

/** Rows as columns two spaces apart, the last one unpadded. */
export function columns(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((row) => row[i]?.length ?? 0))) ?? [];
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  '));
}

/** One line per warm pool: what it holds now and has done. */
function warmPoolLines(ps: PsResponse): string[] {
  return ps.warmPools.map(
    (p) =>
      `${p.kind} warm pool: ${p.ready} ready, ${p.booting} booting (aims at ${p.target}); ` +
      `${p.claims} taken, ${p.coldStarts} pods found it empty, ${p.replaced} replaced, ${p.released} given back`,
  );
}

export function formatPs(ps: PsResponse, now: number): string {
  const pools = warmPoolLines(ps);
  const poolText = pools.length > 0 ? `${pools.join('\n')}\n` : '';
  if (ps.sandboxes.length === 0) return `no sandboxes (kuasard serves ${ps.kinds.join(', ') || 'no kind'})\n${poolText}`;
  const sorted = [...ps.sandboxes].sort((a, b) => a.kind.localeCompare(b.kind) || a.createdAt.localeCompare(b.createdAt));
  const rows = [
    ['KIND', 'SANDBOX', 'POD', 'STATE', 'PID', 'AGE', 'CONTAINERS'],
    ...sorted.map((s) => [
      s.kind,
      shortId(s.id),
      `${s.pod.namespace}/${s.pod.name}`,
      s.state,
      String(s.pid),
      age(s.createdAt, now),
      containerCounts(s.containers),
    ]),
  ];
  const reasons = sorted.filter((s) => s.reason).map((s) => `${shortId(s.id)}: ${s.reason}`);
  return `${[...columns(rows), ...(reasons.length > 0 ? ['', ...reasons] : [])].join('\n')}\n${pools.length > 0 ? `\n${poolText}` : ''}`;
}

const exitText = (p: ProcessView): string => (p.exit ? `exit ${p.exit.exitStatus} at ${p.exit.exitedAt}` : '');

function processTable(processes: readonly ProcessView[], idHeader: string): string[] {
  const rows = [[idHeader, 'STATE', 'PID', 'EXIT'], ...processes.map((p) => [p.id, p.status, String(p.pid), exitText(p)])];
  return columns(rows).map((line) => `    ${line.trimEnd()}`);
}

function mountLines(mounts: readonly MountView[]): string[] {
  if (mounts.length === 0) return ['    (none)'];
  return columns(mounts.map((m) => [m.mountPoint, m.fsType, m.source, m.options.join(',')])).map((line) => `    ${line}`);
}

/** A field per line, the name padded; fields without a value are left out. */
function fields(entries: readonly (readonly [string, string])[]): string[] {
  const shown = entries.filter(([, value]) => value !== '');
  const width = Math.max(...shown.map(([name]) => name.length));
  return shown.map(([name, value]) => `  ${name.padEnd(width)}  ${value}`);
}

const MIB = 1024 * 1024;

function resourcesText(spec: SandboxDetails['spec']): string {
  const r = spec.resources;
  if (!r) return '';
  const cpu = r.cpuQuotaUs > 0 && r.cpuPeriodUs > 0 ? `cpu ${+(r.cpuQuotaUs / r.cpuPeriodUs).toFixed(3)}` : 'cpu unlimited';
  const memory = r.memoryLimitBytes > 0 ? `memory ${+(r.memoryLimitBytes / MIB).toFixed(1)} MiB` : 'memory unlimited';
  return `${cpu}, ${memory}`;
}

const json = (value: unknown): string => (value === null || value === undefined ? '' : JSON.stringify(value));

function formatSandbox(s: SandboxDetails, now: number): string[] {
  const namespaces = Object.entries(s.namespaces).map(([type, path]) => `${type} ${path}`);
  return [
    `sandbox ${s.id} (${s.kind})`,
    ...fields([
      ['pod', `${s.pod.namespace}/${s.pod.name} (uid ${s.pod.uid}, attempt ${s.spec.attempt})`],
      ['state', `${s.state}, pid ${s.pid}, created ${age(s.createdAt, now)} ago`],
      ['reason', s.reason],
      ['exit', s.exit ? `${s.exit.exitStatus} at ${s.exit.exitedAt}` : ''],
      ['resources', resourcesText(s.spec)],
      ['cgroup parent', s.spec.cgroupParent],
      ['network', s.spec.hostNetwork ? "the node's" : s.netnsPath],
      ['namespaces', namespaces.join(', ')],
      ['directory', s.dir],
      ['task API', s.taskAddress],
      ['sockets', s.sockets.join(', ')],
      ['kind state', json(s.kindState?.data)],
    ]),
    '  mounts',
    ...mountLines(s.mounts),
    '  containers',
    ...(s.containers.length === 0 ? ['    (none)'] : processTable(s.containers, 'CONTAINER')),
  ];
}

function formatContainer(c: ContainerDetails): string[] {
  const stdio = [
    c.stdio.terminal ? 'terminal' : '',
    ...(['stdin', 'stdout', 'stderr'] as const).map((k) => (c.stdio[k] ? `${k} ${c.stdio[k]}` : '')),
  ];
  return [
    `container ${c.id} (${c.kind}, sandbox ${c.sandbox})`,
    ...fields([
      ['state', `${c.status}, pid ${c.pid}`],
      ['exit', c.exit ? `${c.exit.exitStatus} at ${c.exit.exitedAt}` : ''],
      ['bundle', c.bundle],
      ['stdio', stdio.filter(Boolean).join(', ')],
      ['rootfs', c.rootfs.map((m) => `${m.type} ${m.source}`).join('; ')],
      ['kind state', json(c.kindState?.data)],
    ]),
    '  mounts',
    ...mountLines(c.mounts),
    '  execs',
    ...(c.execs.length === 0 ? ['    (none)'] : processTable(c.execs, 'EXEC')),
  ];
}

export function formatInspect(inspected: Inspected, now: number): string {
  const lines = inspected.type === 'sandbox' ? formatSandbox(inspected, now) : formatContainer(inspected);
  return `${lines.join('\n')}\n`;
}
