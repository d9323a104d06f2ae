// What a pod of each kind runs in the demo and the benchmarks: the same two things (say hello;
// stay up until stopped) in the form of container each kind runs. containerd's own runc handler
// (the baseline) runs what the runc kind runs.
import type { Environment } from './environment.js';

export interface Workload {
  image: string;
  command: string[];
}

/** Prints a greeting and some facts about where it runs, then exits 0. */
export function helloWorkload(env: Environment, kind: string): Workload {
  if (kind === 'wasm') return { image: env.images.wasmTests, command: ['/hello.wasm', 'greetings from a WebAssembly module'] };
  return {
    image: env.images.busybox,
    command: ['sh', '-c', 'echo "hello from $(hostname), pid $$ in its own namespace"; ip -4 -o addr show scope global | cut -d" " -f2,7'],
  };
}

/**
 * The kinds that have a container which stays up without using the CPU: busybox's `sleep` for
 * runc, and for wasm a module that sleeps a second at a time through WASI's poll_oneoff
 * (test/fixtures/wasm/sleep.wat), so that wasm pods measure the runtime, not a loaded machine.
 */
export const IDLE_WORKLOAD_KINDS: readonly string[] = ['runc', 'wasm'];

/** Runs until it is stopped, doing nothing. */
export function longRunningWorkload(env: Environment, kind: string | undefined): Workload {
  if (kind !== undefined && !IDLE_WORKLOAD_KINDS.includes(kind)) {
    throw new Error(`no idle long-running workload for the ${kind} kind yet`);
  }
  if (kind === 'wasm') return { image: env.images.wasmTests, command: ['/sleep.wasm'] };
  return { image: env.images.busybox, command: ['sleep', '3600'] };
}
