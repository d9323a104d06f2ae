// Ctrl-C during a benchmark run. The run owns a private containerd + kuasard and pods in them,
// so a plain exit would leave them behind: the first signal only asks the run to stop, and the
// run cleans up and writes what it measured.
import type { BenchProgress } from './progress.js';

/**
 * First Ctrl-C (or SIGTERM): stop after the step in flight, then clean up and write what was
 * measured. Second: quit at once (the next run of anything using the devenv removes what is left).
 * Returns the function that stops listening.
 */
export function handleInterrupts(interrupt: AbortController, progress: BenchProgress): () => void {
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupt.signal.aborted) {
      progress.note(`${signal} again: quitting without cleaning up; the next benchmark or test run removes the environment`);
      process.exit(130);
    }
    progress.note(`${signal}: finishing the step in flight, then removing every pod and the environment (again to quit at once)`);
    interrupt.abort(new Error(`interrupted by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
}
