// The host's end of the channel to a VM's agent: one ttrpc connection over the unix socket of
// QEMU's virtio-serial port, on which every call to the agent is multiplexed. QEMU listens on the
// socket from its start, and holds what is written there until the guest opens its port: the
// first Check simply waits for the agent to come up. The connection's end is the channel's death,
// noticed at once (QEMU exited, or the agent's port was closed). A restarted kuasard connects to
// the same socket again: QEMU listens there for its next client as long as the VM runs.
import { setTimeout as sleep } from 'node:timers/promises';
import { Code, RuntimeError } from '../../base/errors.js';
import { Agent } from '../../api/kuasar/agent/v1/agent_pb.js';
import { TtrpcClient, typedClient, type CallOptions, type TypedClient } from '../../rpc/ttrpc/index.js';

export type AgentClient = TypedClient<(typeof Agent)['method']>;

/** How long connecting to QEMU's socket may take: QEMU made it before it daemonized. */
const CONNECT_TIMEOUT_MS = 5_000;

/** One attempt to reach an agent again after a restart (see AgentChannel.reconnect). */
const RECONNECT_ATTEMPT_MS = 2_500;
/**
 * The pause between two attempts: longer than the agent's poll of a quiet port (100 ms,
 * guest/agent/port-channel.ts), so that it sees the first attempt's connection end.
 */
const RECONNECT_PAUSE_MS = 250;

/**
 * How long an agent call may take unless it waits by design. A guest that is alive but stuck
 * (runc blocked on the share, a stalled VM) must not hold a Start, and with it the sandbox's
 * Stop and Shutdown, for good: the call fails with DeadlineExceeded instead.
 */
const CALL_TIMEOUT_MS = 60_000;

/** Calls that answer when something happens (an exit, output, room in a pipe): no deadline. */
const WAITING_CALLS = new Set(['waitProcess', 'readStdio', 'writeStdin']);

/** The agent's methods, each with CALL_TIMEOUT_MS unless the caller or WAITING_CALLS says otherwise. */
function withDeadlines(agent: AgentClient): AgentClient {
  const methods = agent as unknown as Record<string, (request: unknown, options?: CallOptions) => Promise<unknown>>;
  const bounded: Record<string, unknown> = {};
  for (const [name, call] of Object.entries(methods)) {
    bounded[name] = WAITING_CALLS.has(name)
      ? call
      : (request: unknown, options?: CallOptions) => call(request, { timeoutMs: CALL_TIMEOUT_MS, ...options });
  }
  return bounded as unknown as AgentClient;
}

export class AgentChannel {
  private constructor(
    private readonly client: TtrpcClient,
    readonly agent: AgentClient,
  ) {}

  /**
   * Connects to the agent's socket and waits for its first answer, for at most `timeoutMs` or
   * until `vmEnded` settles (the VM died while booting: `describeEnd` says how to find out why).
   */
  static async open(socket: string, options: { timeoutMs: number; vmEnded: Promise<unknown>; describeEnd: () => string }) {
    const client = await TtrpcClient.connect(socket, { timeoutMs: CONNECT_TIMEOUT_MS });
    const channel = new AgentChannel(client, withDeadlines(typedClient(client, Agent)));
    const ended = options.vmEnded.then(() => {
      throw new RuntimeError(Code.Unavailable, `the VM exited before its agent answered (${options.describeEnd()})`);
    });
    try {
      const check = channel.agent.check({}, { timeoutMs: options.timeoutMs }).catch((err: unknown) => {
        if (err instanceof RuntimeError && err.code === Code.DeadlineExceeded) {
          throw new RuntimeError(
            Code.DeadlineExceeded,
            `the VM's agent did not answer within ${options.timeoutMs} ms (${options.describeEnd()})`,
          );
        }
        throw err;
      });
      return { channel, check: await Promise.race([check, ended]) };
    } catch (err) {
      channel.close();
      throw err;
    }
  }

  /**
   * After a restart of kuasard: connects to a running VM's agent again, for at most `timeoutMs`.
   * The agent takes a host for gone only when its port reads end-of-file; a connection that
   * comes before that lands on the old host's ttrpc connection, where its first call is a
   * protocol violation that gets no answer. So an attempt that fails is closed and, after a
   * pause the agent notices, made again, until the VM ends or the time is up.
   */
  static async reconnect(socket: string, options: { timeoutMs: number; vmEnded: Promise<unknown>; describeEnd: () => string }) {
    const deadline = Date.now() + options.timeoutMs;
    let vmEnded = false;
    void options.vmEnded.then(() => (vmEnded = true));
    for (;;) {
      const timeoutMs = Math.max(1, Math.min(RECONNECT_ATTEMPT_MS, deadline - Date.now()));
      try {
        return await AgentChannel.open(socket, { ...options, timeoutMs });
      } catch (err) {
        if (vmEnded) throw err;
        if (deadline - Date.now() < RECONNECT_PAUSE_MS) {
          throw new RuntimeError(
            Code.DeadlineExceeded,
            `the VM's agent did not answer within ${options.timeoutMs} ms of kuasard's restart (last: ${(err as Error).message})`,
          );
        }
        await sleep(RECONNECT_PAUSE_MS);
      }
    }
  }

  /** Settles, with why, once the channel has gone. */
  get whenClosed(): Promise<RuntimeError> {
    return this.client.whenClosed;
  }

  close(): void {
    this.client.close();
  }
}
