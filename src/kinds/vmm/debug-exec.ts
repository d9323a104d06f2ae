// `kuasar exec` on a vmm pod: a command run in the pod's guest, outside its containers, through
// the agent's DebugExec on the pod's channel (the agent runs it, bounds its output and kills it
// at its time-out).
import { failedPrecondition } from '../../base/errors.js';
import type { DebugExecRequest, DebugExecResult } from '../../kind-api/kind.js';
import type { AgentChannel } from './channel.js';

/** What the call may take beyond the command's time-out: the agent kills it, then answers. */
const ANSWER_MARGIN_MS = 10_000;

export async function debugExecInGuest(
  channel: AgentChannel | null,
  sandboxId: string,
  request: DebugExecRequest,
): Promise<DebugExecResult> {
  if (!channel) throw failedPrecondition(`sandbox ${sandboxId} has no running VM (not started, or stopped)`);
  const answer = await channel.agent.debugExec(
    { argv: request.argv, timeoutMs: request.timeoutMs },
    { timeoutMs: request.timeoutMs + ANSWER_MARGIN_MS },
  );
  return {
    stdout: answer.stdout,
    stderr: answer.stderr,
    stdoutTruncated: answer.stdoutTruncated,
    stderrTruncated: answer.stderrTruncated,
    exitStatus: answer.exitStatus,
    timedOut: answer.timedOut,
  };
}
