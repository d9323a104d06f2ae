// The QEMU processes of a test environment's vmm pods, found by the name kuasard gives each VM
// (`-name kuasar-vmm-<sandbox id>,...`) among the processes of the environment's scope: what a
// vmm test checks is gone after a pod, and what it kills to see a VM die.
import { processesOfScope, type LeakScope } from './ownership.js';
import { listProcesses, type HostProcess } from './processes.js';

/** Every VM of the scope, or the one of `sandboxId`. */
export function vmProcesses(scope: LeakScope, sandboxId?: string): HostProcess[] {
  const processes = listProcesses();
  const ours = processesOfScope(processes, scope);
  const name = sandboxId === undefined ? /\bkuasar-vmm-/ : new RegExp(`\\bkuasar-vmm-${sandboxId},`);
  return processes.filter((p) => ours.has(p.pid) && name.test(p.cmdline));
}
