// The wire of kuasard's admin socket, shared by the daemon (admin-server.ts) and `kuasar ps`,
// `inspect` and `exec` (src/cli/admin.ts). HTTP/1.1 with JSON bodies on a unix socket, as the
// metrics endpoint: node:http serves it at no cost when nobody asks, `curl --unix-socket` reads
// it by hand, and a bad request gets a plain answer while the connection and the daemon go on.
// A ttrpc service would need a proto and a client per call for three read-mostly calls of one
// operator.
import { Code } from '../base/errors.js';
import type { ExitInfo, Mount, PodSpec, ProcessStatus, SandboxPhase, SavedState, Stdio } from '../base/model.js';
import type { PodNamespaces, WarmPoolStatus } from '../kind-api/kind.js';

/** GET: every sandbox of every kind served (PsResponse). */
export const PS_PATH = '/v1/sandboxes';
/** GET /v1/inspect/<id>: a sandbox or a container, by its id or an unambiguous beginning of it (Inspected). */
export const INSPECT_PREFIX = '/v1/inspect/';
/** POST /v1/exec/<sandbox id> with an ExecRequest: a command in the pod's own machine (ExecResponse). */
export const EXEC_PREFIX = '/v1/exec/';

export interface ProcessView {
  id: string;
  status: ProcessStatus;
  /** Its pid as the kind knows it (a vmm pod's: in the guest); 0 before it started. */
  pid: number;
  exit: ExitInfo | null;
}

export interface ContainerView extends ProcessView {
  execs: ProcessView[];
}

export interface SandboxSummary {
  kind: string;
  id: string;
  /** The pod as CRI named it. */
  pod: { namespace: string; name: string; uid: string };
  state: SandboxPhase;
  /** Why it cannot be served, or why it ended by itself; empty otherwise. */
  reason: string;
  /** The process that stands for the pod (a VM's QEMU, a gVisor sandbox, a PID namespace holder), or 0. */
  pid: number;
  createdAt: string;
  startedAt: string | null;
  containers: ContainerView[];
}

export interface PsResponse {
  /** The kinds kuasard serves, in its order. */
  kinds: string[];
  sandboxes: SandboxSummary[];
  /** The warm pools of the kinds that keep one (sandboxes made before any pod asked). */
  warmPools: ({ kind: string } & WarmPoolStatus)[];
}

/** A mount of kuasard's mount namespace, from its mountinfo. */
export interface MountView {
  mountPoint: string;
  fsType: string;
  source: string;
  options: string[];
}

export interface SandboxDetails extends SandboxSummary {
  type: 'sandbox';
  /** containerd's namespace. */
  namespace: string;
  spec: PodSpec;
  exit: ExitInfo | null;
  netnsPath: string;
  /** The sandbox's directory in kuasard's state directory. */
  dir: string;
  /** The Task API address containerd uses for the pod's containers. */
  taskAddress: string;
  /** The unix sockets in the sandbox's directory (its task socket, a VM's agent and QMP...). */
  sockets: string[];
  /** Mounts at or below its directory. */
  mounts: MountView[];
  /** Where its own namespaces are on the host. */
  namespaces: PodNamespaces;
  /** What the kind saved of it (a VM's QEMU pid, its taps...). */
  kindState: SavedState | null;
}

export interface ContainerDetails extends ContainerView {
  type: 'container';
  kind: string;
  sandbox: string;
  bundle: string;
  rootfs: Mount[];
  stdio: Stdio;
  /** Mounts below its bundle, and below its sandbox's directory in a directory named by its id. */
  mounts: MountView[];
  kindState: SavedState | null;
}

export type Inspected = SandboxDetails | ContainerDetails;

export interface ExecRequest {
  /** The program and its arguments. */
  argv: string[];
  /** Killed after this long. */
  timeoutMs: number;
}

export interface ExecResponse {
  /** base64: the output is bytes. */
  stdout: string;
  stderr: string;
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  exitStatus: number;
  timedOut: boolean;
}

/** The longest time-out an exec may ask (the guest caps it there too). */
export const MAX_EXEC_TIMEOUT_MS = 10 * 60_000;

/** Every refusal: the code's name and what went wrong. */
export interface ErrorBody {
  error: { code: string; message: string };
}

const HTTP_STATUS: Partial<Record<Code, number>> = {
  [Code.InvalidArgument]: 400,
  [Code.PermissionDenied]: 403,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.FailedPrecondition]: 412,
  [Code.ResourceExhausted]: 429,
  [Code.Unimplemented]: 501,
  [Code.Unavailable]: 503,
  [Code.DeadlineExceeded]: 504,
};

/** The HTTP status that carries `code` (the code's name is in the body). */
export const httpStatusOf = (code: Code): number => HTTP_STATUS[code] ?? 500;
