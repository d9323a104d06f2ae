// runPod's error reporting, with a stand-in CRI: the body's failure is the one a test sees.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PodSandboxConfig } from '../../src/api/cri/runtime/v1/api_pb.js';
import type { Environment } from '../../src/devenv/environment.js';
import { runPod } from '../../src/devenv/pod-runs.js';

/** An environment whose CRI starts pods and fails to stop them; `down` tells its dead daemons. */
function refusingStops(calls: string[], down: () => string[] = () => []): Environment {
  const runtime = {
    runPodSandbox: async () => {
      calls.push('run');
      return { podSandboxId: 'pod-1' };
    },
    stopPodSandbox: async () => {
      calls.push('stop');
      throw new Error('stop refused');
    },
    removePodSandbox: async () => calls.push('remove'),
  };
  return { cri: { runtime }, daemonsDown: down } as unknown as Environment;
}

describe('runPod', () => {
  it("reports the body's failure, with the removal's failure after it told alongside", async () => {
    const calls: string[] = [];
    const failing = async () => {
      throw new Error('the body failed');
    };
    await assert.rejects(runPod(refusingStops(calls), 'h', {} as PodSandboxConfig, [], failing), {
      message: 'the body failed (removing the pod then failed too: stop refused)',
    });
    assert.deepEqual(calls, ['run', 'stop']);
  });

  it('tells of a daemon that died during the body, after the failures it caused', async () => {
    const calls: string[] = [];
    let died = false;
    const down = () => (died ? ['kuasard has exited (signal SIGABRT); the last lines of its log:\n(last words)'] : []);
    const failing = async () => {
      died = true;
      throw new Error('Deadline exceeded');
    };
    await assert.rejects(runPod(refusingStops(calls, down), 'h', {} as PodSandboxConfig, [], failing), {
      message:
        'Deadline exceeded (removing the pod then failed too: stop refused)\nkuasard has exited (signal SIGABRT); the last lines of its log:\n(last words)',
    });
  });

  it('runs no pod once a daemon has died, and says which', async () => {
    const calls: string[] = [];
    const down = () => ['kuasard has exited (exit code 1); the last lines of its log:\n(last words)'];
    await assert.rejects(
      runPod(refusingStops(calls, down), 'h', {} as PodSandboxConfig, [], async () => undefined),
      {
        message: 'the environment has lost a daemon:\nkuasard has exited (exit code 1); the last lines of its log:\n(last words)',
      },
    );
    assert.deepEqual(calls, []);
  });

  it('reports a removal that fails after a body that succeeded', async () => {
    const calls: string[] = [];
    await assert.rejects(
      runPod(refusingStops(calls), 'h', {} as PodSandboxConfig, [], async () => undefined),
      { message: 'stop refused' },
    );
  });
});
