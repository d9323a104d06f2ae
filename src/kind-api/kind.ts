// What every sandbox kind implements. The engine owns the lifecycle, the state file, the waiters
// and the events; a kind owns one object per sandbox (KindSandbox), which owns one object per
// container (KindContainer), which owns its processes (KindProcess: the init and the execs).
// Each object keeps what it runs in memory (clients, descriptors, stdio copies) and hands the
// engine a typed, versioned state to save (state.ts); after a daemon restart the kind rebuilds
// the objects from those states.
import type { Logger } from 'pino';
import type { CgroupMetrics } from '../base/metrics.js';
import type { ContainerRecord, ExecRecord, ExitInfo, Platform, SandboxRecord, WindowSize } from '../base/model.js';
import type { StreamRegistry } from '../base/streams.js';
import type { SavedState } from './state.js';

/** What a kind supports. The engine answers Unimplemented for the rest, before the kind is asked. */
export interface KindCapabilities {
  /** Task Exec: more processes in a running container. */
  exec: boolean;
  /** A terminal for a container or an exec. */
  terminal: boolean;
  /** Task Pause and Resume. */
  pauseResume: boolean;
  /** Task Update: new resources for a container that runs. */
  updateResources: boolean;
  /** stdio over containerd's Streaming API (io_type "streaming"), besides FIFOs. */
  streamingIo: boolean;
  /** What keeps running across a restart of kuasard, and is served again by the next run. */
  restart: {
    /** Containers: their processes outlive the daemon (else they are reported ended, 255). */
    containers: boolean;
    /** Execs: likewise (else they are reported ended, 255, when the daemon comes back). */
    execs: boolean;
    /**
     * The stdio the daemon copied (terminals, streams): whether the next run serves it again.
     * Without it, a surviving process whose output went through the daemon writes into nothing.
     */
    stdio: boolean;
  };
}

/** The host paths of a pod's own namespaces; a type left out is the host's (or none is known). */
export type PodNamespaces = Partial<Record<'network' | 'ipc' | 'uts' | 'pid', string>>;

/** What the engine gives a kind's sandbox object: the record (read-only) and what it may call. */
export interface SandboxContext {
  readonly record: Readonly<SandboxRecord>;
  /** The sandbox's private directory (0700), removed by the engine after `destroy`. */
  readonly dir: string;
  readonly log: Logger;
  /** Stdio streams containerd opened to the sandbox (streaming io), by stream id. */
  readonly streams: StreamRegistry;
  /**
   * The pod's isolation has ended by itself (its VM, its sandbox process, the holder of its PID
   * namespace died): the engine reports the sandbox not ready, ends its containers and answers
   * Controller Wait. `reason` says what ended, for the log and the sandbox's status.
   */
  isolationEnded(reason: string): void;
}

/** What a sandbox object is told of one of its containers. */
export interface ContainerContext {
  readonly record: Readonly<ContainerRecord>;
  readonly log: Logger;
}

/** What a container object is told of one exec process. */
export interface ExecContext {
  readonly record: Readonly<ExecRecord>;
  readonly log: Logger;
}

/** How a process ended. */
export interface ProcessEnd extends ExitInfo {
  /** The kernel's OOM killer (or the kind's memory cap) struck: published before the exit, so CRI says OOMKilled. */
  oomKilled: boolean;
}

/** One process of a container (its init or an exec), from its creation until it is released. */
export interface KindProcess {
  readonly pid: number;
  /** Settles once the process has ended and everything it wrote has been delivered. */
  readonly exited: Promise<ProcessEnd>;
  /** Resizes its terminal; a no-op without one. */
  resize(size: WindowSize): Promise<void>;
  /** Ends its stdin where the daemon holds it (terminals, copied pipes, channels); a no-op otherwise. */
  closeStdin(): Promise<void>;
}

/** An exec process: signalled on its own (an init is signalled through its container). */
export interface KindExec extends KindProcess {
  kill(signal: number): Promise<void>;
  /** Releases what it holds (stdio, files); must succeed when called twice. */
  release(): Promise<void>;
  /** What the next run needs to serve it again (kinds whose execs survive a restart). */
  state(): SavedState | null;
}

/** One container of a sandbox, owned by the kind's sandbox object. */
export interface KindContainer {
  /** Its init process: created (not started) when the container is created or restored. */
  readonly init: KindProcess;
  /** What the next run needs to find the container again; saved by the engine after each change. */
  state(): SavedState | null;
  start(): Promise<void>;
  /** Signals the init, or with `all` every process of the container. */
  kill(signal: number, all: boolean): Promise<void>;
  /** Releases everything the container holds; must succeed when called twice. */
  delete(): Promise<void>;
  pids(): Promise<number[]>;
  /** Task Stats. */
  stats(): Promise<CgroupMetrics>;
  /** Task Update (capability updateResources): `resources` is an OCI LinuxResources object. */
  update(resources: Record<string, unknown>): Promise<void>;
  /** Task Pause and Resume (capability pauseResume). */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Starts an exec (capability exec); `exited` settles when it ends. */
  exec(exec: ExecContext): Promise<KindExec>;
  /** After a restart (capability restart.execs): the exec, running or ended, from its saved state. */
  restoreExec(exec: ExecContext, saved: SavedState | null): Promise<KindExec>;
}

/** Controller Update, as containerd sends it: the fields it names have changed in the pod's spec. */
export interface SandboxUpdate {
  fields: string[];
}

/** A command an operator runs in a pod's own machine, outside its containers (`kuasar exec`). */
export interface DebugExecRequest {
  argv: string[];
  /** The kind's default when 0; it caps what is too long. */
  timeoutMs: number;
}

export interface DebugExecResult {
  stdout: Uint8Array;
  stderr: Uint8Array;
  /** Output past the kind's bound was dropped. */
  stdoutTruncated: boolean;
  stderrTruncated: boolean;
  /** The exit code, or 128 + the signal that killed it. */
  exitStatus: number;
  timedOut: boolean;
}

/** One sandbox (pod), owned by the kind. */
export interface KindSandbox {
  /** What the next run needs to serve the sandbox again; saved by the engine after each change. */
  state(): SavedState | null;
  /** Controller Start: what runs for the pod starts; returns the pid that stands for it, or 0. */
  start(): Promise<{ pid: number }>;
  /**
   * The Task API address containerd is to use for the pod's containers, when the kind serves it
   * elsewhere (a guest agent's); undefined: kuasard's own task socket for the sandbox.
   */
  taskAddress(): string | undefined;
  /** Controller Stop, after the engine has stopped every container. */
  stop(): Promise<void>;
  /** Controller Shutdown, after every container is deleted: release everything; must succeed when called twice. */
  destroy(): Promise<void>;
  /** Controller Metrics: the figures of the pod as a whole. */
  metrics(): Promise<CgroupMetrics>;
  /** Controller Update: apply what changed in the pod's spec, or refuse what cannot change. */
  update(update: SandboxUpdate): Promise<void>;
  /** Where the pod's own namespaces are on the host, for a verbose Status. */
  namespaces(): PodNamespaces;
  /** Task Create: the container's init is created, not started. */
  createContainer(container: ContainerContext): Promise<KindContainer>;
  /**
   * After a restart (capability restart.containers): the container from its saved state, its
   * init's `exited` settling when the process ends (or at once, when it ended meanwhile).
   */
  restoreContainer(container: ContainerContext, saved: SavedState | null): Promise<KindContainer>;
  /**
   * Runs a command for an operator's debugging in the pod's own machine (a VM's guest), outside
   * every container; only kinds that have such a machine implement it (the others' pods run on
   * the host, where the operator already is).
   */
  debugExec?(request: DebugExecRequest): Promise<DebugExecResult>;
}

export interface SandboxKind {
  readonly name: string;
  readonly capabilities: KindCapabilities;
  /** Check the host can run this kind and prepare its state directory; called once at start. */
  init(): Promise<void>;
  platform(): Platform;
  /** Controller Create: the pod's isolation is prepared (nothing runs yet). Undoes its own steps when it fails. */
  createSandbox(sandbox: SandboxContext): Promise<KindSandbox>;
  /** After a restart: the sandbox from its saved state; throws (with the reason) when it cannot be served. */
  restoreSandbox(sandbox: SandboxContext, saved: SavedState | null): Promise<KindSandbox>;
  /**
   * Releases whatever a sandbox's directory may hold when there is no object for it: a daemon
   * died inside its Create, or its state file cannot be believed. Must succeed when called twice.
   */
  destroyLost(sandbox: SandboxContext): Promise<void>;
  /**
   * Daemon exit when the kind has no sandbox left: undo what `init` set up for pods (the next
   * run's `init` sets it up again). Not called while any sandbox remains: its pieces may need it.
   */
  closeIdle?(): Promise<void>;
  /**
   * Daemon exit, whether sandboxes remain or not, before `closeIdle`: ends what the kind runs for
   * no pod (a warm pool). The sandboxes' own pieces stay.
   */
  close?(): Promise<void>;
  /** The kind's pool of sandboxes made before any pod asked (the vmm kind's warm VMs), when it keeps one. */
  warmPool?(): WarmPoolStatus | undefined;
}

/** What a kind's warm pool holds and has done since the daemon started (logs and metrics). */
export interface WarmPoolStatus {
  /** How many it keeps now: its configured size, or less when its memory budget or the host's pressure say so. */
  target: number;
  ready: number;
  booting: number;
  /** Pods given one of its sandboxes. */
  claims: number;
  /** Pods that fitted but found the pool empty, and started cold. */
  coldStarts: number;
  /** Idle ones that died or stopped answering, ended and replaced. */
  replaced: number;
  /** Idle ones given back for memory (the budget, or the host's pressure). */
  released: number;
  /** The host memory its ready ones hold (resident), at the last check. */
  memoryBytes: number;
}
