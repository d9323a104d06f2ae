// containerd's Task API (ttrpc) for the containers of one sandbox, served on the sandbox's own
// socket. The same handlers answer under containerd.task.v3.Task and containerd.task.v2.Task.
import type { MessageInitShape } from '@bufbuild/protobuf';
import type {
  ConnectRequest,
  ConnectResponseSchema,
  CreateTaskRequest,
  CreateTaskResponseSchema,
  DeleteRequest,
  DeleteResponseSchema,
  KillRequest,
  PidsRequest,
  PidsResponseSchema,
  ShutdownRequest,
  StartRequest,
  StartResponseSchema,
  StateRequest,
  StateResponseSchema,
  WaitRequest,
  WaitResponseSchema,
} from '../api/containerd/runtime/task/v3/shim_pb.js';
import { Status } from '../api/containerd/types/task/task_pb.js';
import { failedPrecondition, invalidArgument, notFound, unimplemented } from '../core/errors.js';
import type { ProcessStatus } from '../core/model.js';
import type { Sandbox } from '../core/sandbox.js';
import { toTimestamp } from './timestamps.js';

export const TASK_SERVICE_NAMES = ['containerd.task.v3.Task', 'containerd.task.v2.Task'];

const statusOf: Record<ProcessStatus, Status> = {
  created: Status.CREATED,
  running: Status.RUNNING,
  stopped: Status.STOPPED,
};

type Empty = Record<string, never>;

/** Execs arrive with issue 3's work; until then an exec id names no process. */
function rejectExecId(op: string, req: { id: string; execId: string }): void {
  if (req.execId !== '') throw notFound(`${op}: exec ${req.execId} of container ${req.id}`);
}

export function taskHandlers(sandbox: Sandbox) {
  /** Known container, missing feature: Unimplemented (an unknown container is still NotFound). */
  const unsupported = (what: string) => async (req: { id: string }): Promise<never> => {
    sandbox.container(req.id);
    throw unimplemented(`${what} is not supported by sandbox ${sandbox.id} yet`);
  };

  return {
    async create(req: CreateTaskRequest): Promise<MessageInitShape<typeof CreateTaskResponseSchema>> {
      if (!req.bundle.startsWith('/')) throw invalidArgument(`create container ${req.id}: bundle must be an absolute path`);
      if (req.checkpoint || req.parentCheckpoint) throw failedPrecondition(`create container ${req.id}: restoring checkpoints is not supported`);
      if (req.terminal) throw failedPrecondition(`create container ${req.id}: terminals are not supported yet`);
      const pid = await sandbox.createTask({
        id: req.id,
        bundle: req.bundle,
        rootfs: req.rootfs.map((m) => ({ type: m.type, source: m.source, target: m.target, options: [...m.options] })),
        stdio: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
      });
      return { pid };
    },

    async start(req: StartRequest): Promise<MessageInitShape<typeof StartResponseSchema>> {
      rejectExecId('start', req);
      return { pid: await sandbox.startTask(req.id) };
    },

    async state(req: StateRequest): Promise<MessageInitShape<typeof StateResponseSchema>> {
      rejectExecId('state', req);
      const s = sandbox.taskState(req.id);
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

    async kill(req: KillRequest): Promise<Empty> {
      rejectExecId('kill', req);
      await sandbox.killTask(req.id, req.signal, req.all);
      return {};
    },

    async wait(req: WaitRequest): Promise<MessageInitShape<typeof WaitResponseSchema>> {
      rejectExecId('wait', req);
      const exit = await sandbox.waitTask(req.id);
      return { exitStatus: exit.exitStatus, exitedAt: toTimestamp(exit.exitedAt) };
    },

    async delete(req: DeleteRequest): Promise<MessageInitShape<typeof DeleteResponseSchema>> {
      rejectExecId('delete', req);
      const { pid, exit } = await sandbox.deleteTask(req.id);
      return { pid, exitStatus: exit.exitStatus, exitedAt: toTimestamp(exit.exitedAt) };
    },

    async pids(req: PidsRequest): Promise<MessageInitShape<typeof PidsResponseSchema>> {
      const pids = await sandbox.taskPids(req.id);
      return { processes: pids.map((pid) => ({ pid })) };
    },

    async connect(req: ConnectRequest): Promise<MessageInitShape<typeof ConnectResponseSchema>> {
      const s = sandbox.taskState(req.id);
      // No shim exists: the daemon itself serves the task, so it reports its own pid.
      return { shimPid: process.pid, taskPid: s.pid };
    },

    async shutdown(_req: ShutdownRequest): Promise<Empty> {
      // Sent only to shims; the daemon outlives every sandbox, so there is nothing to do.
      return {};
    },

    exec: unsupported('exec'),
    resizePty: unsupported('resizing a terminal'),
    closeIO: unsupported('closing stdin'),
    pause: unsupported('pause'),
    resume: unsupported('resume'),
    checkpoint: unsupported('checkpoint'),
    update: unsupported('resource updates'),
    stats: unsupported('stats'),
  };
}
