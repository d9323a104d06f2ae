// The runc kind's pod state is believed after a restart only when it is one the kind wrote for
// that very sandbox: its values name mounts to unmount, a process to kill and a cgroup to remove.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkPodState, holderCgroupName } from '../../src/kinds/runc/pod-state.js';

const DIR = '/run/kuasar/runc/pod-1';
const HOLDER = { pid: 4242, startTime: '987654', cgroupsPath: `/kubepods/${holderCgroupName('pod-1')}` };

test('the pod state the kind writes is believed', () => {
  for (const state of [
    null,
    { ipcPath: `${DIR}/ns/ipc`, utsPath: `${DIR}/ns/uts` },
    { ipcPath: null, utsPath: null, pidHolder: null },
    { ipcPath: `${DIR}/ns/ipc`, utsPath: null, pidHolder: HOLDER },
    { ipcPath: `${DIR}/ns/ipc`, utsPath: null, pidHolder: { ...HOLDER, cgroupsPath: null } },
  ]) {
    assert.deepEqual(checkPodState(state, 'pod-1', DIR), { state }, JSON.stringify(state));
  }
});

test('a damaged or foreign pod state is refused, saying what is wrong', () => {
  const cases: [unknown, RegExp][] = [
    ['text', /\(whole\)/],
    [{ ipcPath: '/etc/passwd', utsPath: null }, /ipcPath/],
    [{ ipcPath: '/run/kuasar/runc/pod-2/ns/ipc', utsPath: null }, /ipcPath/],
    [{ ipcPath: null }, /utsPath/],
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
  for (const [state, problem] of cases) {
    const checked = checkPodState(state, 'pod-1', DIR);
    assert.ok('problem' in checked, JSON.stringify(state));
    assert.match(checked.problem, problem);
  }
});
