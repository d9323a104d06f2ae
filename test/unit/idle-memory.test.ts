// When kuasard gives memory back after a burst of calls: once they have stopped for the quiet
// time, only when it grew, with collections before the allocator's release, one at a time.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { IdleMemoryRelease } from '../../src/daemon/idle-memory.js';

const MIB = 1024 * 1024;

/** A process whose resident set the test sets, recording what the release did in order. */
function fakeProcess(startMib: number) {
  const steps: string[] = [];
  let resident = startMib * MIB;
  const release = new IdleMemoryRelease(pino({ level: 'silent' }), {
    quietMs: 30,
    growthBytes: MIB,
    collections: 2,
    collectionGapMs: 1,
    residentBytes: () => resident,
    collectGarbage: () => void steps.push('gc'),
    releaseFreeMemory: () => {
      steps.push('trim');
      resident -= 2 * MIB;
    },
  });
  return {
    steps,
    release,
    grow: (mib: number) => {
      resident += mib * MIB;
    },
  };
}

describe('memory released after a burst of work', () => {
  it('waits until the calls have stopped for the quiet time, then collects twice and trims once', async () => {
    const p = fakeProcess(20);
    const observe = p.release.observer();
    p.grow(5);
    for (let i = 0; i < 5; i++) {
      observe('Create', 0, 0.01);
      await sleep(10);
      assert.deepEqual(p.steps, [], 'a call within the quiet time pushes the release back');
    }
    await sleep(60);
    await p.release.settled;
    assert.deepEqual(p.steps, ['gc', 'gc', 'trim']);
  });

  it('does nothing after calls that did not make the process grow', async () => {
    const p = fakeProcess(20);
    p.release.noteWork();
    await sleep(60);
    await p.release.settled;
    assert.deepEqual(p.steps, []);
  });

  it('measures growth from what the last release left', async () => {
    const p = fakeProcess(20);
    p.grow(3);
    p.release.noteWork();
    await sleep(60);
    await p.release.settled;
    assert.deepEqual(p.steps, ['gc', 'gc', 'trim']);
    // 21 MiB now; half a MiB more is no reason for another round, two are.
    p.grow(0.5);
    p.release.noteWork();
    await sleep(60);
    await p.release.settled;
    assert.equal(p.steps.length, 3);
    p.grow(2);
    p.release.noteWork();
    await sleep(60);
    await p.release.settled;
    assert.deepEqual(p.steps, ['gc', 'gc', 'trim', 'gc', 'gc', 'trim']);
  });

  it('still trims when node cannot collect (no --expose-gc), and close() cancels a pending release', async () => {
    const steps: string[] = [];
    let resident = 30 * MIB;
    const options = {
      quietMs: 30,
      residentBytes: () => resident,
      collectGarbage: undefined,
      releaseFreeMemory: () => void steps.push('trim'),
    };
    const release = new IdleMemoryRelease(pino({ level: 'silent' }), options);
    resident += 4 * MIB;
    release.noteWork();
    await sleep(60);
    await release.settled;
    assert.deepEqual(steps, ['trim']);
    const closed = new IdleMemoryRelease(pino({ level: 'silent' }), options);
    resident += 4 * MIB;
    closed.noteWork();
    closed.close();
    await sleep(60);
    assert.deepEqual(steps, ['trim']);
  });
});
