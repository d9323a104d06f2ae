// Which Task calls a restarted kuasard runs again when the crashed one had read them and not
// answered (kept-task-sockets.ts): exactly those that change nothing. Running a Kill or a Delete
// twice could take effect twice; answering a Connect "unknown" instead of running it again left
// a task in containerd that CRI never deletes (runc-crash.test.ts found it).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Task } from '../../src/api/containerd/runtime/task/v3/shim_pb.js';
import { isReadOnlyTaskCall, isTaskWait, TASK_SERVICE_NAMES } from '../../src/services/task.js';

/** Every method of the Task service, and whether running it a second time is harmless. */
const READ_ONLY: Record<string, boolean> = {
  State: true,
  Create: false,
  Start: false,
  Delete: false,
  Pids: true,
  Pause: false,
  Resume: false,
  Checkpoint: false,
  Kill: false,
  Exec: false,
  ResizePty: false,
  CloseIO: false,
  Update: false,
  Wait: true,
  Stats: true,
  Connect: true,
  Shutdown: false,
};

describe('Task calls run again after a crash', () => {
  it('classifies every method of the Task service, under both its names', () => {
    const methods = Task.methods.map((m) => m.name).sort();
    assert.deepEqual(methods, Object.keys(READ_ONLY).sort(), 'a new Task method must be classified here');
    for (const service of TASK_SERVICE_NAMES) {
      for (const method of methods) assert.equal(isReadOnlyTaskCall(service, method), READ_ONLY[method], `${service}/${method}`);
    }
  });

  it('runs no method of another service again, and holds only Wait for a process life', () => {
    assert.equal(isReadOnlyTaskCall('containerd.runtime.sandbox.v1.Sandbox', 'Wait'), false);
    assert.equal(isReadOnlyTaskCall('containerd.task.v3.Streaming', 'Stream'), false);
    for (const method of Object.keys(READ_ONLY)) assert.equal(isTaskWait(TASK_SERVICE_NAMES[0]!, method), method === 'Wait', method);
  });
});
