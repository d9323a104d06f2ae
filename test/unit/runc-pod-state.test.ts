// The runc kind's pod state is believed after a restart only when it is one the kind wrote for
// that very sandbox: its values name mounts to unmount, a process to kill and a cgroup to remove.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { holderCgroupName, podStateCodec } from '../../src/kinds/runc/pod-state.js';

const DIR = '/run/kuasar/runc/pod-1';
const HOLDER = { pid: 4242, startTime: '987654', cgroupsPath: `/kubepods/${holderCgroupName('pod-1')}` };

test('the pod state the kind writes is believed', () => {
  const codec = podStateCodec('pod-1', DIR);
  for (const state of [
    { ipcPath: `${DIR}/ns/ipc`, utsPath: `${DIR}/ns/uts`, pidHolder: null },
    { ipcPath: null, utsPath: null, pidHolder: null },
    { ipcPath: `${DIR}/ns/ipc`, utsPath: null, pidHolder: HOLDER },
    { ipcPath: `${DIR}/ns/ipc`, utsPath: null, pidHolder: { ...HOLDER, cgroupsPath: null } },
  ]) {
    assert.deepEqual(codec.load(codec.save(state), 'pod-1'), state, JSON.stringify(state));
  }
});

test('a damaged or foreign pod state is refused, saying what is wrong', () => {
  const cases: [unknown, RegExp][] = [
    ['text', /\(whole\)/],
    [{ ipcPath: '/etc/passwd', utsPath: null }, /ipcPath/],
    [{ ipcPath: '/run/kuasar/runc/pod-2/ns/ipc', utsPath: null }, /ipcPath/],
    [{ ipcPath: null }, /utsPath/],
    [{ ipcPath: null, utsPath: null }, /pidHolder/],
    [{ ipcPath: null, utsPath: null, pidHolder: { ...HOLDER, pid: 1 } }, /pidHolder\.pid/],
    [{ ipcPath: null, utsPath: null, pidHolder: { ...HOLDER, pid: '4242' } }, /pidHolder\.pid/],
    [{ ipcPath: null, utsPath: null, pidHolder: { ...HOLDER, startTime: 'soon' } }, /pidHolder\.startTime/],
    [
      { ipcPath: null, utsPath: null, pidHolder: { ...HOLDER, cgroupsPath: '/' } },
      /pidHolder\.cgroupsPath: not the cgroup of this pod's holder/,
    ],
    [
      { ipcPath: null, utsPath: null, pidHolder: { ...HOLDER, cgroupsPath: `/kubepods/${holderCgroupName('pod-2')}` } },
      /pidHolder\.cgroupsPath/,
    ],
  ];
  const codec = podStateCodec('pod-1', DIR);
  for (const [state, problem] of cases) {
    assert.throws(() => codec.load({ version: 1, data: state }, 'pod-1'), problem, JSON.stringify(state));
  }
  assert.throws(() => codec.load({ version: 2, data: null }, 'pod-1'), /state version 2, this kuasard reads 1/);
  assert.throws(() => codec.load(null, 'pod-1'), /no state was saved/);
});
