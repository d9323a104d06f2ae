// What a restarted kuasard believes of a vmm pod's state: the saved state's shape, and the VM
// taken over only when the saved pid is still the same process and runs QEMU for this VM
// (stand-in processes play QEMU: real processes, named by their command line).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { Vm } from '../../src/kinds/vmm/vm.js';
import { podState } from '../../src/kinds/vmm/pod-state.js';
import { readProcStat } from '../../src/linux/proc.js';
import { Reaper } from '../../src/linux/reaper.js';

describe('vmm pod state', () => {
  it('keeps the VM, the taps and the guest paths of the pod namespaces; refuses a state of another version or shape', () => {
    const state = {
      vm: { pid: 1234, startTime: '98765' },
      taps: [{ name: 'eth0', tap: 'kuasar-tap0' }],
      guestNamespaces: { ipc: '/run/kuasar/ns/ipc', uts: '/run/kuasar/ns/uts', pid: null },
    };
    assert.deepEqual(podState.load(podState.save(state), 'pod'), state);
    // A warm VM keeps the name it booted under; a state without one names the sandbox's own VM.
    const warm = { ...state, vm: { ...state.vm, name: 'kuasar-vmm-warm-0123456789abcdef' } };
    assert.deepEqual(podState.load(podState.save(warm), 'pod'), warm);
    assert.throws(() => podState.load({ version: 3, data: { ...state, vm: { ...state.vm, name: 'sshd' } } }, 'pod'), /pod: state vm\.name/);
    assert.throws(() => podState.load({ version: 2, data: { vm: null, taps: [] } }, 'pod'), /pod: state version 2, this kuasard reads 3/);
    assert.throws(
      () => podState.load({ version: 3, data: { ...state, guestNamespaces: { ipc: 'relative', uts: '/u', pid: null } } }, 'pod'),
      /pod: state guestNamespaces\.ipc/,
    );
  });
});

describe('a VM taken over after a restart', () => {
  const reaper = new Reaper({ pollIntervalMs: 50 });
  before(() => reaper.start());
  after(() => reaper.stop());

  /** A process whose command line names the VM as QEMU's does (`-name <name>,debug-threads=on`). */
  async function standIn(name: string) {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', '--', '-name', `${name},debug-threads=on`], {
      stdio: 'ignore',
    });
    await once(child, 'spawn');
    const startTime = readProcStat(child.pid!)?.startTime;
    assert.ok(startTime);
    return { child, process: { pid: child.pid!, startTime } };
  }

  it('is adopted when the pid is the same process and runs this VM, and its end is seen', async () => {
    const { child, process: vmProcess } = await standIn('kuasar-vmm-p1');
    const vm = await Vm.adopt(vmProcess, 'kuasar-vmm-p1', '/nonexistent/qmp', reaper);
    assert.equal(vm.running, true);
    child.kill('SIGKILL');
    await vm.ended;
    assert.equal(vm.running, false);
  });

  it('is refused when the pid runs another VM, or is another process now', async () => {
    const { child, process: vmProcess } = await standIn('kuasar-vmm-other');
    try {
      await assert.rejects(Vm.adopt(vmProcess, 'kuasar-vmm-p1', '/nonexistent/qmp', reaper), /does not run its VM kuasar-vmm-p1/);
      await assert.rejects(
        Vm.adopt({ ...vmProcess, startTime: String(Number(vmProcess.startTime) + 1) }, 'kuasar-vmm-other', '/nonexistent/qmp', reaper),
        /has exited/,
      );
    } finally {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });
});
