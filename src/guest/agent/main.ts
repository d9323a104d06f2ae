// Entry of the guest agent (bundled into /usr/lib/kuasar/agent.mjs): starts it with the
// command-line flags (options.ts says which).
import { runAgent } from './agent.js';

runAgent(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`kuasar agent: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  // Outside a VM a failed start is an exit. As PID 1 nothing is left to keep the process up: it
  // ends, the guest kernel panics and QEMU exits (-no-reboot), which kuasard reports.
  if (process.pid !== 1) process.exit(1);
});
