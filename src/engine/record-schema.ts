// What a state file must hold to be loaded: a SandboxRecord, checked field by field. A file
// that is torn, truncated, edited by hand or written by an incompatible version is refused with
// the reason, instead of being cast into a record whose missing or mistyped fields would crash
// a later call, or whose ids (they become paths and runc ids) could point outside the sandbox.
import { z } from 'zod';
import { failedPrecondition, type RuntimeError } from '../base/errors.js';
import { isValidId } from '../base/ids.js';
import type { SandboxRecord } from '../base/model.js';

const id = z.string().refine(isValidId, 'not a valid identifier');
const isoTime = z.iso.datetime();
const pid = z.number().int().nonnegative();
const exitInfo = z.object({ exitStatus: z.number().int(), exitedAt: isoTime });
const processStatus = z.enum(['created', 'running', 'paused', 'stopped']);
const stringList = z.array(z.string());
const stringMap = z.record(z.string(), z.string());

const stdio = z.object({ stdin: z.string(), stdout: z.string(), stderr: z.string(), terminal: z.boolean() });

const podSpec = z.object({
  name: z.string(),
  namespace: z.string(),
  uid: z.string(),
  attempt: z.number().int().nonnegative(),
  hostname: z.string(),
  logDirectory: z.string(),
  dns: z.object({ servers: stringList, searches: stringList, options: stringList }).nullable(),
  hostNetwork: z.boolean(),
  hostIpc: z.boolean(),
  pidMode: z.enum(['pod', 'container', 'node']),
  cgroupParent: z.string(),
  sysctls: stringMap,
  labels: stringMap,
  annotations: stringMap,
  resources: z
    .object({
      cpuQuotaUs: z.number().int().nonnegative(),
      cpuPeriodUs: z.number().int().nonnegative(),
      memoryLimitBytes: z.number().int().nonnegative(),
    })
    .optional(),
});

const mount = z.object({ type: z.string(), source: z.string(), target: z.string(), options: stringList });

/** A process that has stopped knows its exit, and one that has not does not: else its waiters would hang or lie. */
const exitMatchesStatus = (p: { status: string; exit: unknown }) => (p.status === 'stopped') === (p.exit !== null);
const EXIT_MISMATCH = 'a stopped process needs its exit, and only a stopped one has it';

/** A kind's state: checked here for its envelope only, by the kind for its data. */
const kindState = z
  .object({ version: z.number().int(), data: z.unknown() })
  .nullable()
  .optional()
  .transform((value) => (value ? { version: value.version, data: value.data } : null));

const execRecord = z
  .object({
    id,
    spec: z.record(z.string(), z.unknown()),
    stdio,
    pid,
    status: processStatus,
    exit: exitInfo.nullable(),
    kindState,
  })
  .refine(exitMatchesStatus, EXIT_MISMATCH);

/** Ids name directories and processes: two records with one id would share them. */
const uniqueIds = (items: readonly { id: string }[]) => new Set(items.map((i) => i.id)).size === items.length;

const containerRecord = z
  .object({
    id,
    bundle: z.string(),
    rootfs: z.array(mount),
    stdio,
    pid,
    status: processStatus,
    exit: exitInfo.nullable(),
    kindState,
    execs: z.array(execRecord).refine(uniqueIds, 'two execs with one id'),
  })
  .refine(exitMatchesStatus, EXIT_MISMATCH);

const sandboxRecord = z.object({
  id,
  kind: z.string(),
  namespace: z.string(),
  netnsPath: z.string(),
  pod: podSpec,
  phase: z.enum(['created', 'ready', 'stopped']),
  createdAt: isoTime,
  startedAt: isoTime.nullable(),
  exit: exitInfo.nullable(),
  pid,
  taskAddress: z.string(),
  kindState,
  containers: z.array(containerRecord).refine(uniqueIds, 'two containers with one id'),
});

// Kept in step with model.ts: a field added there and forgotten here fails to compile.
const checked: z.ZodType<SandboxRecord, unknown> = sandboxRecord;

/**
 * The record in a state file's text, for the sandbox `expected` names (its directory and kind);
 * FailedPrecondition with the first thing wrong otherwise.
 */
export function parseSandboxRecord(text: string, expected: { id: string; kind: string }): SandboxRecord {
  const refuse = (why: string): RuntimeError => failedPrecondition(`state of sandbox ${expected.id} is unusable: ${why}`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw refuse(`not JSON (${(err as Error).message})`);
  }
  const parsed = checked.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? issue.path.join('.') : 'the record';
    throw refuse(`${where}: ${issue.message}`);
  }
  const record = parsed.data;
  if (record.id !== expected.id) throw refuse(`it names sandbox ${JSON.stringify(record.id)}`);
  if (record.kind !== expected.kind) throw refuse(`it is of kind ${JSON.stringify(record.kind)}, not ${expected.kind}`);
  return record;
}
