// What every sandbox kind implements. Core owns the lifecycle, the state file, the waiters and
// the events; a kind only does the isolation-specific work behind these few calls.
import type { Logger } from 'pino';
import type { CgroupMetrics } from '../base/metrics.js';
import type { ContainerRecord, ExecRecord, ExitInfo, Platform, SandboxRecord, WindowSize } from '../base/model.js';
import type { StreamRegistry } from '../base/streams.js';

/** What a kind sees of one sandbox while it works on it. */
export interface SandboxContext {
  readonly record: SandboxRecord;
  /** The sandbox's private directory (0700), removed by core after `destroy`. */
  readonly dir: string;
  readonly log: Logger;
  /** Stdio streams containerd opened to the sandbox (streaming io), by stream id. */
  readonly streams: StreamRegistry;
  /**
   * The kernel's OOM killer struck in the container: published at once, so a kind that learns
   * it when the container ends reports it before the exit (CRI then says OOMKilled).
   */
  reportOom(containerId: string): void;
}

/** The host paths of a pod's own namespaces; a type left out is the host's (or none is known). */
export type PodNamespaces = Partial<Record<'network' | 'ipc' | 'uts' | 'pid', string>>;

/** A container process that has been created; `exited` settles when it ends. */
export interface CreatedProcess {
  pid: number;
  exited: Promise<ExitInfo>;
}

export interface TaskDriver {
  /** Create the container (rootfs mounted, process created but not started). */
  create(sandbox: SandboxContext, container: ContainerRecord): Promise<CreatedProcess>;
  start(sandbox: SandboxContext, container: ContainerRecord): Promise<void>;
  kill(sandbox: SandboxContext, container: ContainerRecord, signal: number, all: boolean): Promise<void>;
  /** Release everything the container holds; must succeed when called twice. */
  delete(sandbox: SandboxContext, container: ContainerRecord): Promise<void>;
  pids(sandbox: SandboxContext, container: ContainerRecord): Promise<number[]>;
  /** The counters of the container's cgroup (Task Stats). */
  stats(sandbox: SandboxContext, container: ContainerRecord): Promise<CgroupMetrics>;
  /** Apply new limits to the container; `resources` is an OCI LinuxResources object. */
  update(sandbox: SandboxContext, container: ContainerRecord, resources: Record<string, unknown>): Promise<void>;
  /** Freeze every process of the container, until `resume`. */
  pause(sandbox: SandboxContext, container: ContainerRecord): Promise<void>;
  resume(sandbox: SandboxContext, container: ContainerRecord): Promise<void>;
  /** Run an exec process (exec.spec) in the running container; `exited` settles when it ends. */
  startExec(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord): Promise<CreatedProcess>;
  killExec(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord, signal: number): Promise<void>;
  /** Release everything the exec holds; must succeed when called twice, or for one never started. */
  deleteExec(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord): Promise<void>;
  /** Resize the terminal of the container's init (exec null) or of an exec; no-op without one. */
  resizePty(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord | null, size: WindowSize): Promise<void>;
  /** End the process's stdin where the daemon holds it (terminals, streams); no-op otherwise. */
  closeStdin(sandbox: SandboxContext, container: ContainerRecord, exec: ExecRecord | null): Promise<void>;
  /**
   * After a daemon restart: find the container's process again and settle when it ends. The
   * process is no longer our child, so its exit status may be unknowable (then 255, logged).
   */
  reattach(sandbox: SandboxContext, container: ContainerRecord): Promise<ExitInfo>;
}

export interface SandboxKind {
  readonly name: string;
  readonly tasks: TaskDriver;
  /** Check the host can run this kind and prepare its state directory; called once at start. */
  init(): Promise<void>;
  platform(): Platform;
  /** Controller Create: set up the pod's isolation; no container runs yet. */
  prepare(sandbox: SandboxContext): Promise<void>;
  /** Controller Start: returns the pid that stands for the pod, or 0. */
  start(sandbox: SandboxContext): Promise<{ pid: number }>;
  /** Controller Stop, after core has stopped every container. */
  stop(sandbox: SandboxContext): Promise<void>;
  /** Controller Metrics: the counters of the pod as a whole. */
  metrics(sandbox: SandboxContext): Promise<CgroupMetrics>;
  /** Controller Shutdown: release every resource of the pod; must succeed when called twice. */
  destroy(sandbox: SandboxContext): Promise<void>;
  /** After a daemon restart: check the pod's resources are still there; throws when it cannot serve. */
  recover(sandbox: SandboxContext): Promise<void>;
  /** Where the pod's own namespaces are on the host, for a verbose Status. */
  namespaces?(sandbox: SandboxContext): PodNamespaces;
  /**
   * Daemon exit when the kind has no sandbox left: undo what `init` set up for pods (the next
   * run's `init` sets it up again). Not called while any sandbox remains: its pieces may need it.
   */
  closeIdle?(): Promise<void>;
}
