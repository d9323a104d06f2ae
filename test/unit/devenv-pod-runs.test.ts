// runPod's error reporting, with a stand-in CRI: the body's failure is the one a test sees.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { PodSandboxConfig } from '../../src/api/cri/runtime/v1/api_pb.js';
import type { Environment } from '../../src/devenv/environment.js';
import { runPod } from '../../src/devenv/pod-runs.js';

/** An environment whose CRI starts pods and fails to stop them. */
function refusingStops(calls: string[]): Environment {
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
  return { cri: { runtime } } as unknown as Environment;
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

  it('reports a removal that fails after a body that succeeded', async () => {
    const calls: string[] = [];
    await assert.rejects(
      runPod(refusingStops(calls), 'h', {} as PodSandboxConfig, [], async () => undefined),
      { message: 'stop refused' },
    );
  });
});
