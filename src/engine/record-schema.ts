// What a state file must hold to be loaded: a SandboxRecord, checked field by field. A file
// that is torn, truncated, edited by hand or written by an incompatible version is refused with
// the reason, instead of being cast into a record whose missing or mistyped fields would crash
// a later call, or whose ids (they become paths and runc ids) could point outside the sandbox.
import * as check from '../base/schema.js';
import { failedPrecondition, type RuntimeError } from '../base/errors.js';
import { isValidId } from '../base/ids.js';
import type { ContainerRecord, SandboxRecord } from '../base/model.js';

const id = check.string().refine(isValidId, 'not a valid identifier');
const isoTime = check.isoDatetime();
const pid = check.number().int().nonnegative();
const exitInfo = check.object({ exitStatus: check.number().int(), exitedAt: isoTime });
const processStatus = check.oneOf(['created', 'running', 'paused', 'stopped']);
const stringList = check.array(check.string());
const stringMap = check.record(check.string());

const stdio = check.object({ stdin: check.string(), stdout: check.string(), stderr: check.string(), terminal: check.boolean() });

const podSpec = check.object({
  name: check.string(),
  namespace: check.string(),
  uid: check.string(),
  attempt: check.number().int().nonnegative(),
  hostname: check.string(),
  logDirectory: check.string(),
  dns: check.object({ servers: stringList, searches: stringList, options: stringList }).nullable(),
  hostNetwork: check.boolean(),
  hostIpc: check.boolean(),
  pidMode: check.oneOf(['pod', 'container', 'node']),
  cgroupParent: check.string(),
  sysctls: stringMap,
  labels: stringMap,
  annotations: stringMap,
  resources: check
    .object({
      cpuQuotaUs: check.number().int().nonnegative(),
      cpuPeriodUs: check.number().int().nonnegative(),
      memoryLimitBytes: check.number().int().nonnegative(),
    })
    .optional(),
});

const mount = check.object({ type: check.string(), source: check.string(), target: check.string(), options: stringList });

/** A process that has stopped knows its exit, and one that has not does not: else its waiters would hang or lie. */
const exitMatchesStatus = (p: { status: string; exit: unknown }) => (p.status === 'stopped') === (p.exit !== null);
const EXIT_MISMATCH = 'a stopped process needs its exit, and only a stopped one has it';

/** A kind's state: checked here for its envelope only, by the kind for its data. */
const kindState = check
  .object({ version: check.number().int(), data: check.unknown() })
  .nullable()
  .optional()
  .transform((value) => (value ? { version: value.version, data: value.data } : null));

const execRecord = check
  .object({
    id,
    spec: check.record(check.unknown()),
    stdio,
    pid,
    status: processStatus,
    exit: exitInfo.nullable(),
    kindState,
  })
  .refine(exitMatchesStatus, EXIT_MISMATCH);

/** Ids name directories and processes: two records with one id would share them. */
const uniqueIds = (items: readonly { id: string }[]) => new Set(items.map((i) => i.id)).size === items.length;

const containerRecord = check
  .object({
    id,
    bundle: check.string(),
    rootfs: check.array(mount),
    stdio,
    pid,
    status: processStatus,
    exit: exitInfo.nullable(),
    kindState,
    execs: check.array(execRecord).refine(uniqueIds, 'two execs with one id'),
  })
  .refine(exitMatchesStatus, EXIT_MISMATCH);

const sandboxRecord = check.object({
  id,
  kind: check.string(),
  namespace: check.string(),
  netnsPath: check.string(),
  pod: podSpec,
  phase: check.oneOf(['created', 'ready', 'stopped']),
  createdAt: isoTime,
  startedAt: isoTime.nullable(),
  exit: exitInfo.nullable(),
  pid,
  taskAddress: check.string(),
  kindState,
  containers: check.array(containerRecord).refine(uniqueIds, 'two containers with one id'),
  createInfo: check.record(check.unknown()).optional(),
});

// Kept in step with model.ts: a field added there and forgotten here fails to compile.
const checked: check.Schema<SandboxRecord> = sandboxRecord;
const checkedContainer: check.Schema<ContainerRecord> = containerRecord;

/**
 * The record in a state file's text, for the sandbox `expected` names (its directory and kind);
 * FailedPrecondition with the first thing wrong otherwise. Its containers may also be saved one
 * file each (parseContainerRecord); the sandbox's file then lists none.
 */
export function parseSandboxRecord(text: string, expected: { id: string; kind: string }): SandboxRecord {
  const refuse = (why: string): RuntimeError => failedPrecondition(`state of sandbox ${expected.id} is unusable: ${why}`);
  const record = parseWith(checked, text, 'the record', refuse);
  if (record.id !== expected.id) throw refuse(`it names sandbox ${JSON.stringify(record.id)}`);
  if (record.kind !== expected.kind) throw refuse(`it is of kind ${JSON.stringify(record.kind)}, not ${expected.kind}`);
  return record;
}

/** One container's record, from the file named `file` of sandbox `sandboxId`, which names container `id`. */
export function parseContainerRecord(text: string, expected: { sandboxId: string; file: string; id: string }): ContainerRecord {
  const refuse = (why: string): RuntimeError =>
    failedPrecondition(`state of sandbox ${expected.sandboxId} is unusable: container record ${expected.file}: ${why}`);
  const record = parseWith(checkedContainer, text, 'the container', refuse);
  if (record.id !== expected.id) throw refuse(`it names container ${JSON.stringify(record.id)}`);
  return record;
}

function parseWith<T>(schema: check.Schema<T>, text: string, what: string, refuse: (why: string) => RuntimeError): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw refuse(`not JSON (${(err as Error).message})`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw refuse(check.describeIssue(parsed.issues[0]!, what));
  return parsed.data;
}
