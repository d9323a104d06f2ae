// containerd's Task API (ttrpc) for the containers of a sandbox, served on the sandbox's own
// socket. The same handlers answer under containerd.task.v3.Task and containerd.task.v2.Task,
// and for every sandbox: each call finds its sandbox in its context (the scope of the server
// that took it), so that a pod costs no handlers of its own.
import type { MessageInitShape } from '@bufbuild/protobuf';
import type {
  CloseIORequest,
  ConnectRequest,
  ConnectResponseSchema,
  CreateTaskRequest,
  CreateTaskResponseSchema,
  DeleteRequest,
  DeleteResponseSchema,
  ExecProcessRequest,
  KillRequest,
  PauseRequest,
  PidsRequest,
  PidsResponseSchema,
  ResizePtyRequest,
  ResumeRequest,
  ShutdownRequest,
  StartRequest,
  StartResponseSchema,
  StateRequest,
  StateResponseSchema,
  StatsRequest,
  StatsResponseSchema,
  UpdateTaskRequest,
  WaitRequest,
  WaitResponseSchema,
} from '../api/containerd/runtime/task/v3/shim_pb.js';
import { Status } from '../api/containerd/types/task/task_pb.js';
import { failedPrecondition, invalidArgument, unimplemented } from '../base/errors.js';
import type { ProcessStatus } from '../base/model.js';
import type { Sandbox } from '../engine/sandbox.js';
import type { CallContext } from '../rpc/ttrpc/handlers.js';
import { packCgroupMetrics } from './metrics.js';
import { decodeJsonAny, decodeLinuxResources, PROCESS_SPEC_TYPE } from './resources.js';
import { toTimestamp } from './wkt.js';

export const TASK_SERVICE_NAMES = ['containerd.task.v3.Task', 'containerd.task.v2.Task'];

/**
 * The Task methods that change nothing, so that one a crashed kuasard had read and not answered
 * can be run again by the next (any other is answered Unavailable: whether it took effect is
 * unknown). Wait must be one: CRI learns a container's exit only from its answer. Connect too:
 * containerd asks for the new task's pid right after Create, and when that fails it neither
 * deletes the task nor lets CRI know of it, so the container's pod could never be removed
 * ("cannot delete running task").
 */
const READ_ONLY_TASK_METHODS: ReadonlySet<string> = new Set(['Wait', 'Connect', 'State', 'Pids', 'Stats']);

/** Whether a call is one of the Task API's read-only ones (READ_ONLY_TASK_METHODS). */
export const isReadOnlyTaskCall = (service: string, method: string): boolean =>
  READ_ONLY_TASK_METHODS.has(method) && TASK_SERVICE_NAMES.includes(service);

/** Whether a call is a Task Wait: pending for its process's whole life. */
export const isTaskWait = (service: string, method: string): boolean => method === 'Wait' && TASK_SERVICE_NAMES.includes(service);

const statusOf: Record<ProcessStatus, Status> = {
  created: Status.CREATED,
  running: Status.RUNNING,
  paused: Status.PAUSED,
  stopped: Status.STOPPED,
};

type Empty = Record<string, never>;

function processSpec(req: ExecProcessRequest): Record<string, unknown> {
  const what = `exec ${req.execId} in container ${req.id}`;
  const spec = decodeJsonAny(req.spec, PROCESS_SPEC_TYPE, what, 'process spec');
  if (!Array.isArray(spec['args']) || spec['args'].length === 0) throw invalidArgument(`${what}: the process spec has no args`);
  return spec;
}

/** A task call's context: the sandbox whose socket it came on. */
export type TaskCall = CallContext<Sandbox>;

export function taskHandlers() {
  /** Known container, missing feature: Unimplemented (an unknown container is still NotFound). */
  const unsupported =
    (what: string) =>
    async (req: { id: string }, { scope: sandbox }: TaskCall): Promise<never> => {
      sandbox.container(req.id);
      throw unimplemented(`${what} is not supported by sandbox ${sandbox.id} yet`);
    };

  return {
    async create(req: CreateTaskRequest, { scope: sandbox }: TaskCall): Promise<MessageInitShape<typeof CreateTaskResponseSchema>> {
      if (!req.bundle.startsWith('/')) throw invalidArgument(`create container ${req.id}: bundle must be an absolute path`);
      if (req.checkpoint || req.parentCheckpoint)
        throw failedPrecondition(`create container ${req.id}: restoring checkpoints is not supported`);
      const pid = await sandbox.createTask({
        id: req.id,
        bundle: req.bundle,
        rootfs: req.rootfs.map((m) => ({ type: m.type, source: m.source, target: m.target, options: [...m.options] })),
        stdio: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
      });
      return { pid };
    },

    async start(req: StartRequest, { scope: sandbox }: TaskCall): Promise<MessageInitShape<typeof StartResponseSchema>> {
      return { pid: await sandbox.startTask(req.id, req.execId) };
    },

    async state(req: StateRequest, { scope: sandbox }: TaskCall): Promise<MessageInitShape<typeof StateResponseSchema>> {
      const s = sandbox.taskState(req.id, req.execId);
      return {
        id: s.id,
        bundle: s.bundle,
        pid: s.pid,
        status: statusOf[s.status],
        stdin: s.stdio.stdin,
        stdout: s.stdio.stdout,
        stderr: s.stdio.stderr,
        terminal: s.stdio.terminal,
        exitStatus: s.exit?.exitStatus ?? 0,
        exitedAt: toTimestamp(s.exit?.exitedAt),
        execId: req.execId,
      };
    },

    async kill(req: KillRequest, { scope: sandbox }: TaskCall): Promise<Empty> {
      await sandbox.killTask(req.id, req.signal, req.all, req.execId);
      return {};
    },

    async wait(req: WaitRequest, { scope: sandbox }: TaskCall): Promise<MessageInitShape<typeof WaitResponseSchema>> {
      const exit = await sandbox.waitTask(req.id, req.execId);
      return { exitStatus: exit.exitStatus, exitedAt: toTimestamp(exit.exitedAt) };
    },

    async delete(req: DeleteRequest, { scope: sandbox }: TaskCall): Promise<MessageInitShape<typeof DeleteResponseSchema>> {
      const { pid, exit } = await sandbox.deleteTask(req.id, req.execId);
      return { pid, exitStatus: exit.exitStatus, exitedAt: toTimestamp(exit.exitedAt) };
    },

    async pids(req: PidsRequest, { scope: sandbox }: TaskCall): Promise<MessageInitShape<typeof PidsResponseSchema>> {
      const pids = await sandbox.taskPids(req.id);
      return { processes: pids.map((pid) => ({ pid })) };
    },

    async connect(req: ConnectRequest, { scope: sandbox }: TaskCall): Promise<MessageInitShape<typeof ConnectResponseSchema>> {
      const s = sandbox.taskState(req.id);
      // No shim exists: the daemon itself serves the task, so it reports its own pid.
      return { shimPid: process.pid, taskPid: s.pid };
    },

    async shutdown(_req: ShutdownRequest, _call: TaskCall): Promise<Empty> {
      // Sent only to shims; the daemon outlives every sandbox, so there is nothing to do.
      return {};
    },

    async exec(req: ExecProcessRequest, { scope: sandbox }: TaskCall): Promise<Empty> {
      await sandbox.execProcess(req.id, {
        execId: req.execId,
        spec: processSpec(req),
        stdio: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
      });
      return {};
    },

    async resizePty(req: ResizePtyRequest, { scope: sandbox }: TaskCall): Promise<Empty> {
      await sandbox.resizePty(req.id, req.execId, { width: req.width, height: req.height });
      return {};
    },

    async closeIO(req: CloseIORequest, { scope: sandbox }: TaskCall): Promise<Empty> {
      if (req.stdin) await sandbox.closeStdin(req.id, req.execId);
      else sandbox.taskState(req.id, req.execId);
      return {};
    },
    async pause(req: PauseRequest, { scope: sandbox }: TaskCall): Promise<Empty> {
      await sandbox.pauseTask(req.id);
      return {};
    },

    async resume(req: ResumeRequest, { scope: sandbox }: TaskCall): Promise<Empty> {
      await sandbox.resumeTask(req.id);
      return {};
    },

    async update(req: UpdateTaskRequest, { scope: sandbox }: TaskCall): Promise<Empty> {
      await sandbox.updateTask(req.id, decodeLinuxResources(req.resources, `update container ${req.id}`));
      return {};
    },

    async stats(req: StatsRequest, { scope: sandbox }: TaskCall): Promise<MessageInitShape<typeof StatsResponseSchema>> {
      return { stats: packCgroupMetrics(await sandbox.taskStats(req.id)) };
    },

    checkpoint: unsupported('checkpoint'),
  };
}
