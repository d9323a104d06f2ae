// What a sandbox kind tells the rest of kuasar about itself. Each kind has one registration in
// its own folder (registration.ts), listed once in kinds/index.ts; the daemon reads its name,
// configuration schema and factory; the devenv, the demo and the benchmark read its workloads
// and its benchmark notes. A registration is data and a lazy factory: loading it loads none of
// the kind's own modules (the factory imports them when the daemon builds the kind) and nothing
// of the devenv (workloads name their images by the devenv's short names, as plain strings).
import type * as check from '../base/schema.js';
import type { KindConfig } from '../config/kind-schema.js';
import type { CheckContext, CheckResult } from './checks.js';
import type { KindCapabilities, SandboxKind } from './kind.js';
import type { KeptDescriptors } from '../linux/fd-keeper.js';
import type { Reaper } from '../linux/reaper.js';
import type { Logger } from 'pino';

/**
 * The longest name a kind may have. Task sockets live at <state_dir>/<kind>/<sandbox id>/task.sock,
 * and the socket-paths check (src/doctor/socket-paths.ts) says when a state_dir is too long for them.
 */
export const MAX_KIND_NAME_LENGTH = 9;

/** A container a kind runs: an image of the devenv by its short name ("busybox", "wasm-tests"), and the command. */
export interface Workload {
  image: string;
  command: string[];
}

/** What the daemon hands a kind's factory besides the kind's own configuration table. */
export interface KindContext {
  /** <state_dir>/<kind>: the kind's own directory. */
  kindDir: string;
  reaper: Reaper;
  /** The kind's own logger. */
  log: Logger;
  /** Descriptors that outlive a crash of the daemon, held by the fd keeper (names are the kind's own). */
  keptDescriptors: KeptDescriptors;
}

/** The benchmark's parts and targets that are set for one kind only (kuasar bench). */
export interface KindBenchmark {
  /**
   * Set when the kind is benchmarked only when asked for by name (`kuasar bench --kinds <name>`),
   * not in a default run: why, as the report says it.
   */
  onlyWhenAsked?: string;
  /**
   * The pod start and per-pod memory targets are set for this kind, against containerd's
   * own runc handler, which then runs this kind's idle workload too. One kind has this.
   */
  versusBaseline?: boolean;
  /** Set when the kind's containers run inside kuasard itself, not as processes of their own. One kind has this. */
  inKuasard?: {
    /** What each running container is inside kuasard, as the report says it ("a thread each"). */
    each: string;
    /** What one running container's memory is made of, for the report of a missed target. */
    memory: string;
    /**
     * The Task API rate part: containers run from bundles that hold only process.args (bench/task-rate.ts),
     * with the image's files as their rootfs; one command stays up until killed, the other exits 0.
     */
    taskRate: { image: string; longRunning: string[]; shortLived: string[] };
  };
  /**
   * Set when each pod keeps processes of its own on the host besides its containers' (a user-space
   * kernel and its helpers, a VM): their memory is part of what a pod of this kind costs, and the
   * benchmark reads it beside kuasard's.
   */
  podProcesses?: PodProcessLocation & {
    /** What those processes are, as the report says it (Markdown), and in a few words for a table. */
    what: string;
    short: string;
    /** A published figure to set the measured memory per pod beside (Markdown). */
    anchor: string;
  };
  /**
   * Keys of the kind's configuration table that the benchmark's kuasard sets (values the kind's
   * schema accepts): for pods that, started many at once, need longer than the defaults allow, and
   * a warm pool. Given the environment's cgroup name: what the kind places in a cgroup of its own
   * goes below it, where the environment's teardown and sweep find it.
   */
  config?: (environment: { cgroupName: string }) => Readonly<Record<string, unknown>>;
  /**
   * Caps on a run's default counts for this kind's handler (an option given on the command line
   * still wins): for pods that take seconds to start or hold hundreds of MiB each.
   */
  runLimits?: KindRunLimits;
  /** Set for kinds whose pods are virtual machines: how the report splits a VM pod's start, and what it sets it beside. */
  vmStart?: {
    /** The phases of a pod start, in the order they run; what is left of the start is containerd's and the transport's. */
    phases: readonly StartPhase[];
    /** kuasard's log record of each VM that came up (its `msg`), and its field that names the accelerator the VM ran with. */
    readyRecord: { msg: string; accelField: string };
    /** Published start figures of other VM runtimes (Markdown): a reference, not a target. */
    anchor: string;
  };
  /**
   * Set for kinds that keep a pool of sandboxes started ahead of their pods (the vmm kind's warm
   * VMs): the benchmark's kuasard keeps one (`config` sets its size), and the benchmark times warm
   * starts (pods the pool serves) and cold ones (pods it cannot serve) side by side.
   */
  warmPool?: WarmPoolBenchmark;
}

/** How the benchmark drives and recognises a kind's pool (KindBenchmark.warmPool). */
export interface WarmPoolBenchmark {
  /** The pool's size in the benchmark's kuasard (the kind's `config` sets the kind's key to it). */
  size: number;
  /** A pod the pool cannot serve: its pod-level memory limit, in MiB, and why the pool cannot serve it (Markdown). */
  coldPod: { memoryLimitMib: number; why: string };
  /**
   * A pool member's directory below the kind's state directory, named by its id, which lasts as
   * long as it is idle (a pod that claims it takes its files and removes the directory).
   */
  idleDir: string;
  /** The argument prefix of a pool member's process, followed by its id (it keeps that name once claimed). */
  argumentPrefix: string;
  /** kuasard's log record of a pool member that became ready (its `msg`), and its field with the member's id. */
  readyRecord: { msg: string; idField: string };
  /** The field of the kind's `vmStart.readyRecord` that names the pool member a pod was given; absent when the pod started cold. */
  claimedField: string;
  /** The phases of a warm start, as `vmStart.phases` are those of a cold one. */
  phases: readonly StartPhase[];
}

/** Where the benchmark finds the processes each pod keeps of its own, one group per pod. */
export type PodProcessLocation =
  /** In one host cgroup per pod below the pod's cgroup parent, whose name begins with this (the sandbox id follows). */
  | { cgroupPrefix: string }
  /** Processes with an argument that begins with this (the sandbox id follows): a name the kind gives each pod's process. */
  | { argumentPrefix: string };

export interface KindRunLimits {
  /** One-pod-at-a-time starts, pods per parallel batch, parallel batches. */
  singleRounds: number;
  parallelPods: number;
  parallelRounds: number;
  /** The most pods running at a memory point: the run's counts above it are left out. */
  memoryPods: number;
  /** Why, as the report says it. */
  why: string;
}

/** One phase of a pod start: the time of some stage records, less that of stages inside them that are phases of their own. */
export interface StartPhase {
  /** What happens in it, as the report says it. */
  phase: string;
  /** The stages (kuasard's `stage` records: RPCs or steps) whose time it is. */
  stages: readonly string[];
  /** Stages inside those whose time is another phase's. */
  minus?: readonly string[];
}

/** A kind's table: kindConfigSchema extended with the kind's own keys. */
export type KindConfigSchema = check.ObjectSchema<check.Shape> & check.Schema<KindConfig>;

export interface KindRegistration<Name extends string = string, Schema extends KindConfigSchema = KindConfigSchema> {
  /** The kind's name: its `[kinds.<name>]` table, its state directory, its CRI handler `kuasar-<name>`. */
  readonly name: Name;
  /** What it supports (the same object its kind gives the engine). */
  readonly capabilities: KindCapabilities;
  /** Its configuration table: kindConfigSchema extended with its own keys, every key with a default. */
  readonly config: Schema;
  /**
   * Builds the kind from its own table (already checked by `config`). Imports the kind's modules
   * itself (`await import`), so that a daemon loads only the kinds it serves. (A method, so that
   * a registration with its own table type fits the list of all of them.)
   */
  create(config: check.Infer<Schema>, context: KindContext): Promise<SandboxKind>;
  /**
   * Whether this host can run the kind with this table (`kuasar doctor`; kuasard at start, with
   * `context.depth` "start"): the kind's own checks, from a module it imports only when asked.
   * A failed check says what to do. (The host-wide checks are not the kind's: src/doctor.)
   */
  checks(config: check.Infer<Schema>, context: CheckContext): Promise<CheckResult[]>;
  readonly workloads: {
    /** What `kuasar demo` runs: prints a greeting and something about where it runs, then exits 0. */
    hello: Workload;
    /** What the benchmark's pods run: stays up until stopped without using the CPU; `summary` names it in the report (Markdown). */
    idle: Workload & { summary: string };
  };
  readonly bench?: KindBenchmark;
}

/** Keeps a registration's own name and table types, which config.ts composes into the configuration's type. */
export function defineKind<Name extends string, Schema extends KindConfigSchema>(
  registration: KindRegistration<Name, Schema>,
): KindRegistration<Name, Schema> {
  return registration;
}
