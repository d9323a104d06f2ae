// One container of a vmm pod: its rootfs and bind sources put into the sandbox's share on the
// host, its spec rewritten for the guest, its init created there by the agent (runc in the
// guest), and its stdio forwarded between containerd's endpoints on the host and the agent. Its
// exit is the agent's answer to WaitProcess, with the real status from the guest and whether the
// guest's OOM killer struck in its cgroup. Its figures, limits and freezer are that cgroup's in
// the guest (cgroup v2), through the agent. The agent keeps its processes, their exits and their
// unread output through a restart of kuasard, and the fd keeper keeps containerd's FIFOs open:
// the next run follows every process again.
import type { Logger } from 'pino';
import { Code, RuntimeError } from '../../base/errors.js';
import type { CgroupMetrics } from '../../base/metrics.js';
import {
  UNKNOWN_EXIT_STATUS,
  exitedNow,
  type PodSpec,
  type ProcessStatus,
  type SavedState,
  type Stdio,
  type WindowSize,
} from '../../base/model.js';
import type { StreamRegistry } from '../../base/streams.js';
import { timed } from '../../base/stages.js';
import type { ContainerContext, ExecContext, KindContainer, KindExec, KindProcess, ProcessEnd } from '../../kind-api/kind.js';
import { ForwardedStdio } from '../../io/forwarded-stdio.js';
import type { KeptAs } from '../../io/kept-fifos.js';
import { readBundleSpec } from '../../oci/bundle.js';
import { agentStdioChannel, type AgentProcessRef, type AgentStdioStreams } from './agent-stdio.js';
import type { AgentClient } from './channel.js';
import { guestCgroupsPath, guestResources, guestSpec } from './guest-spec.js';
import type { SandboxShare } from './share.js';

/** What a container needs of its pod's VM. */
export interface VmmPodView {
  pod: PodSpec;
  agent: AgentClient;
  share: SandboxShare;
  streams: StreamRegistry;
  /** Guest paths of the namespaces the agent pinned for the pod. */
  namespaces: { ipc: string; uts: string; pid: string | null };
  /** Where a process's stdio FIFOs are kept open across a restart, by the process's name in the pod. */
  keptAs(process: string): KeptAs;
}

/** A process in the guest (the init or an exec): ended when the agent says so and its output is delivered. */
class GuestProcess implements KindProcess {
  constructor(
    readonly pid: number,
    readonly exited: Promise<ProcessEnd>,
    protected readonly stdio: ForwardedStdio,
  ) {}

  /** Answered once the guest has set the size, as runc's shim answers once its ioctl is done. */
  async resize(size: WindowSize): Promise<void> {
    await this.stdio.resize(size);
  }

  async closeStdin(): Promise<void> {
    this.stdio.closeStdin();
  }
}

/** An exec: signalled on its own, forgotten by the agent once released. */
class GuestExec extends GuestProcess implements KindExec {
  constructor(
    pid: number,
    exited: Promise<ProcessEnd>,
    stdio: ForwardedStdio,
    private readonly agent: AgentClient,
    private readonly ref: AgentProcessRef,
  ) {
    super(pid, exited, stdio);
  }

  async kill(signal: number): Promise<void> {
    await this.agent.killProcess({ ...this.ref, signal });
  }

  async release(): Promise<void> {
    this.stdio.close();
    // Gone already: the container (or the VM) went first, or a release came twice.
    await this.agent.deleteProcess(this.ref).catch(() => undefined);
  }

  state(): SavedState | null {
    return null;
  }
}

/** Which stdio streams containerd gave the process: those the agent holds for it (a terminal has no stderr). */
const streamsOf = (stdio: Stdio): AgentStdioStreams => ({
  stdin: stdio.stdin !== '',
  stdout: stdio.stdout !== '',
  stderr: stdio.stderr !== '' && !stdio.terminal,
});

/** A process's name in its pod, for the FIFOs kept across a restart: the container's id, and the exec's. */
const processName = (ref: AgentProcessRef): string => (ref.execId ? `${ref.containerId}/${ref.execId}` : ref.containerId);

/** No stdio at all: a process followed no more, or one whose endpoints are gone. */
const NO_STDIO: Stdio = { stdin: '', stdout: '', stderr: '', terminal: false };

/** Forwards the process's stdio through the agent; its end, once the agent tells it and the output is delivered. */
function followInGuest(agent: AgentClient, ref: AgentProcessRef, stdio: ForwardedStdio, streams: AgentStdioStreams, log: Logger) {
  stdio.forward(agentStdioChannel(agent, ref, streams, (slot) => stdio.unwritten(slot), log));
  return waitInGuest(agent, ref, log).then(async (end): Promise<ProcessEnd> => {
    await stdio.finish();
    return end;
  });
}

/**
 * After a restart: a process the agent kept, followed again. Its output goes on from what the
 * agent kept unread (see agent-stdio.ts) into containerd's FIFOs, which the fd keeper held open;
 * a stream cannot be had again (containerd opens one only before the process is created): the
 * output meant for it is read and dropped, and a stdin from it ends. Its end is the agent's
 * answer, with the real status also when it came while kuasard was down. A process that had
 * ended before needs nothing.
 */
async function followAgain(pod: VmmPodView, ref: AgentProcessRef, process: { stdio: Stdio; status: ProcessStatus }, log: Logger) {
  if (process.status === 'stopped') {
    const stdio = await ForwardedStdio.open({ stdio: NO_STDIO, streams: pod.streams, log });
    return { stdio, exited: new Promise<never>(() => undefined) };
  }
  const fifoOrNone = (endpoint: string): string => (endpoint.includes('://') ? '' : endpoint);
  const { stdin, stdout, stderr, terminal } = process.stdio;
  const fifos = { stdin: fifoOrNone(stdin), stdout: fifoOrNone(stdout), stderr: fifoOrNone(stderr), terminal };
  const stdio = await ForwardedStdio.open({ stdio: fifos, streams: pod.streams, log, keptAs: pod.keptAs(processName(ref)) }).catch(
    (err: unknown) => {
      log.warn({ err }, "containerd's stdio FIFOs cannot be opened again: the process's output is dropped");
      return ForwardedStdio.open({ stdio: NO_STDIO, streams: pod.streams, log });
    },
  );
  log.info({ status: process.status }, 'following the process in the guest again');
  return { stdio, exited: followInGuest(pod.agent, ref, stdio, streamsOf(process.stdio), log) };
}

export class VmmContainer implements KindContainer {
  private constructor(
    private readonly pod: VmmPodView,
    private readonly context: ContainerContext,
    readonly init: GuestProcess,
    private readonly stdio: ForwardedStdio,
  ) {}

  private get ref(): AgentProcessRef {
    return { containerId: this.context.record.id, execId: '' };
  }

  /** Task Create: the container's pieces shared, its init created in the guest; undone when a step fails. */
  static async create(pod: VmmPodView, context: ContainerContext): Promise<VmmContainer> {
    const { record, log } = context;
    const keptAs = pod.keptAs(processName({ containerId: record.id, execId: '' }));
    const stdio = await ForwardedStdio.open({ stdio: record.stdio, streams: pod.streams, log, keptAs });
    try {
      const cri = await readBundleSpec(record.bundle);
      const exposed = await pod.share.expose(record, cri, pod.pod.uid, log);
      const spec = guestSpec(cri, {
        pod: pod.pod,
        cgroupsPath: guestCgroupsPath(record.id),
        ...exposed,
        files: pod.share.guestFiles(),
        namespaces: pod.namespaces,
      });
      const streams = streamsOf(record.stdio);
      const { pid } = await timed(log, 'vmm.agent-create', () =>
        pod.agent.createContainer({
          containerId: record.id,
          specJson: new TextEncoder().encode(JSON.stringify(spec)),
          stdio: { ...streams, terminal: record.stdio.terminal },
          emptyDirs: exposed.emptyDirs,
        }),
      );
      const exited = followInGuest(pod.agent, { containerId: record.id, execId: '' }, stdio, streams, log);
      return new VmmContainer(pod, context, new GuestProcess(pid, exited, stdio), stdio);
    } catch (err) {
      log.warn({ err }, 'task create failed; releasing what it took');
      stdio.close();
      await pod.agent.deleteContainer({ containerId: record.id }).catch(() => undefined);
      await pod.share.release(record.id).catch((e) => log.error({ err: e }, 'cleanup after failed create'));
      throw err;
    }
  }

  state(): SavedState | null {
    return null;
  }

  async start(): Promise<void> {
    await this.pod.agent.startContainer(this.ref);
  }

  async kill(signal: number, all: boolean): Promise<void> {
    await this.pod.agent.killContainer({ containerId: this.ref.containerId, signal, all });
  }

  /** Removes the container from the guest (a VM gone already holds nothing), then from the share. */
  async delete(): Promise<void> {
    this.stdio.close();
    await this.pod.agent.deleteContainer({ containerId: this.ref.containerId }).catch((err: unknown) => {
      if (!(err instanceof RuntimeError && (err.code === Code.NotFound || err.code === Code.Unavailable))) throw err;
    });
    await timed(this.context.log, 'vmm.unshare-container', () => this.pod.share.release(this.ref.containerId));
  }

  async pids(): Promise<number[]> {
    return (await this.pod.agent.listPids(this.ref)).pids;
  }

  /** The counters of the container's cgroup in the guest (v2: the guest has no other). */
  async stats(): Promise<CgroupMetrics> {
    const { metrics } = await this.pod.agent.containerStats({ containerId: this.ref.containerId });
    return { version: 2, v2: metrics ?? {} };
  }

  /** runc update in the guest, with what of the resources the guest can apply. */
  async update(resources: Record<string, unknown>): Promise<void> {
    const json = JSON.stringify(guestResources(resources));
    await this.pod.agent.updateContainer({ containerId: this.ref.containerId, resourcesJson: new TextEncoder().encode(json) });
  }

  async pause(): Promise<void> {
    await this.pod.agent.pauseContainer({ containerId: this.ref.containerId });
  }

  async resume(): Promise<void> {
    await this.pod.agent.resumeContainer({ containerId: this.ref.containerId });
  }

  /** Task Start of an exec: runc exec in the guest, its stdio forwarded as the init's. */
  async exec(exec: ExecContext): Promise<KindExec> {
    const { record, log } = exec;
    const ref = { containerId: this.ref.containerId, execId: record.id };
    const stdio = await ForwardedStdio.open({
      stdio: record.stdio,
      streams: this.pod.streams,
      log,
      keptAs: this.pod.keptAs(processName(ref)),
    });
    try {
      // Labels of the host's security modules mean nothing in the guest (as for the container's spec).
      const { apparmorProfile: _apparmor, selinuxLabel: _selinux, ...process } = record.spec;
      const streams = streamsOf(record.stdio);
      const { pid } = await timed(log, 'vmm.agent-exec', () =>
        this.pod.agent.execProcess({
          ...ref,
          processJson: new TextEncoder().encode(JSON.stringify(process)),
          stdio: { ...streams, terminal: record.stdio.terminal },
        }),
      );
      return new GuestExec(pid, followInGuest(this.pod.agent, ref, stdio, streams, log), stdio, this.pod.agent, ref);
    } catch (err) {
      stdio.close();
      throw err;
    }
  }

  /** After a restart: the exec as the agent kept it (see followAgain). */
  async restoreExec(exec: ExecContext): Promise<KindExec> {
    const { record, log } = exec;
    const ref = { containerId: this.ref.containerId, execId: record.id };
    const { stdio, exited } = await followAgain(this.pod, ref, record, log);
    return new GuestExec(record.pid, exited, stdio, this.pod.agent, ref);
  }

  /** After a restart: the container as the agent kept it (see followAgain); nothing of it was saved on the host. */
  static async restore(pod: VmmPodView, context: ContainerContext): Promise<VmmContainer> {
    const { record, log } = context;
    const { stdio, exited } = await followAgain(pod, { containerId: record.id, execId: '' }, record, log);
    return new VmmContainer(pod, context, new GuestProcess(record.pid, exited, stdio), stdio);
  }
}

/**
 * The process's end as the agent tells it; when the channel is lost first (the VM died), the
 * status cannot be known: 255, as containerd reports an exit it could not learn.
 */
async function waitInGuest(agent: AgentClient, ref: AgentProcessRef, log: Logger): Promise<ProcessEnd> {
  try {
    const reply = await agent.waitProcess(ref);
    const exitedAt = reply.exitedAtNs > 0n ? new Date(Number(reply.exitedAtNs / 1_000_000n)) : new Date();
    return { exitStatus: reply.exitStatus, exitedAt: exitedAt.toISOString(), oomKilled: reply.oomKilled };
  } catch (err) {
    log.warn({ err: (err as Error).message }, "lost the guest's answer on the process's end");
    return { ...exitedNow(UNKNOWN_EXIT_STATUS), oomKilled: false };
  }
}
