// Entry of the guest agent (bundled into /usr/lib/kuasar/agent.mjs): starts it with the
// command-line flags (options.ts says which).
import { runAgent } from './agent.js';

runAgent(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`kuasar agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  // PID 1 must never exit (the guest would panic); elsewhere a failed start is an exit.
  if (process.pid !== 1) process.exit(1);
});
