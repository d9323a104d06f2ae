// Plain data that describes sandboxes and containers. These records are what the state file
// holds, so they contain only JSON-safe values and nothing that belongs to one protocol.

/** The pod as CRI described it, reduced to what the kinds act on. */
export interface PodSpec {
  name: string;
  namespace: string;
  uid: string;
  attempt: number;
  hostname: string;
  logDirectory: string;
  dns: { servers: string[]; searches: string[]; options: string[] } | null;
  /** True when the pod uses the node's network namespace (no netns_path arrives then). */
  hostNetwork: boolean;
  hostIpc: boolean;
  /** 'pod': one PID namespace for the pod; 'container': one per container; 'node': the host's. */
  pidMode: 'pod' | 'container' | 'node';
  cgroupParent: string;
  sysctls: Record<string, string>;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /**
   * What kubelet sizes the pod at (the sum of its containers' limits plus the runtime class's
   * overhead), when it says: a kind that gives each pod a machine of its own sizes it so.
   * Absent in records of older runs.
   */
  resources?: PodResources;
}

/** A pod's size as kubelet states it; 0 means no limit was given. */
export interface PodResources {
  /** CPU time per period, in microseconds (the CFS quota and period). */
  cpuQuotaUs: number;
  cpuPeriodUs: number;
  memoryLimitBytes: number;
}

/** A containerd mount (containerd.types.Mount: a snapshot layer or a bind) as it arrives on the wire. */
export interface Mount {
  type: string;
  source: string;
  /** Where to mount, relative to the container's rootfs; empty means the rootfs itself. */
  target: string;
  options: string[];
}

export interface Stdio {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

/** A terminal's size in character cells. */
export interface WindowSize {
  width: number;
  height: number;
}

/**
 * What a kind's object keeps in the state file: a version and the data (JSON), which the kind
 * checks against its own schema when it reads it back (kind-api/state.ts).
 */
export interface SavedState {
  version: number;
  data: unknown;
}

export interface ExitInfo {
  /** The exit code, or 128 + the signal number when a signal killed the process (shell style). */
  exitStatus: number;
  exitedAt: string; // ISO 8601
}

/**
 * The exit status of a process whose real one cannot be known: it ended while kuasard was down
 * or after a restart (it was no longer our child), it never ran, or its sandbox could not be
 * taken over. containerd's CRI reports an exit it could not learn the same way (unknownExitCode).
 */
export const UNKNOWN_EXIT_STATUS = 255;

export type SandboxPhase = 'created' | 'ready' | 'stopped';

/** 'paused': the container's processes are frozen (Task Pause) until Resume. */
export type ProcessStatus = 'created' | 'running' | 'paused' | 'stopped';

/** Another process run in a container (Task Exec): made by Exec, run by Start. */
export interface ExecRecord {
  id: string;
  /** The OCI runtime-spec Process to run, as containerd sent it (JSON). */
  spec: Record<string, unknown>;
  stdio: Stdio;
  /** 0 until started. */
  pid: number;
  status: ProcessStatus;
  exit: ExitInfo | null;
  /** What the kind keeps of the exec (kinds whose execs survive a restart). */
  kindState: SavedState | null;
}

export interface ContainerRecord {
  id: string;
  bundle: string;
  rootfs: Mount[];
  stdio: Stdio;
  pid: number;
  status: ProcessStatus;
  exit: ExitInfo | null;
  /** What the kind keeps of the container, opaque to the engine. */
  kindState: SavedState | null;
  execs: ExecRecord[];
}

export interface SandboxRecord {
  id: string;
  kind: string;
  /** containerd namespace the sandbox was created in (events are published there). */
  namespace: string;
  netnsPath: string;
  pod: PodSpec;
  phase: SandboxPhase;
  createdAt: string;
  startedAt: string | null;
  exit: ExitInfo | null;
  /** A process that stands for the pod, or 0 when the kind keeps none. */
  pid: number;
  taskAddress: string;
  /** What the kind keeps of the sandbox, opaque to the engine. */
  kindState: SavedState | null;
  containers: ContainerRecord[];
  /**
   * What the controller was told at Create and only shows back (a verbose Status): JSON, opaque
   * to core and the kinds. Absent in records of older runs.
   */
  createInfo?: Record<string, unknown>;
}

export interface Platform {
  os: string;
  architecture: string;
  variant: string;
}

export const nowIso = (): string => new Date().toISOString();

/** An exit with `exitStatus` that happens now. */
export const exitedNow = (exitStatus: number): ExitInfo => ({ exitStatus, exitedAt: nowIso() });
