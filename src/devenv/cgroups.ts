// Cgroups a test makes the way kubelet makes a pod's: usable in every hierarchy (cpuset's cpus
// and mems filled in), so that runtimes can make their own cgroups below them.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { joinCgroup } from '../linux/cgroups.js';

/** Makes `cgroupsPath` (below an existing parent) by moving a passing process in, which joinCgroup prepares it for. */
export async function makeCgroup(cgroupsPath: string): Promise<void> {
  const passing = spawn('sleep', ['60'], { stdio: 'ignore' });
  try {
    await joinCgroup(cgroupsPath, passing.pid!);
  } finally {
    passing.kill('SIGKILL');
    await once(passing, 'exit');
  }
}
