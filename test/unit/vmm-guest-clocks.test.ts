// The vmm kind's guest clock keeper: when the host's wall clock counts as jumped, and that the
// keeper syncs its guests while they are kept and stops once they are forgotten.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import pino from 'pino';
import { GuestClocks, JUMP_THRESHOLD_MS, wallClockJumped } from '../../src/kinds/vmm/guest-clocks.js';

describe('wallClockJumped', () => {
  const at = (wallMs: number, monotonicMs: number) => ({ wallMs, monotonicMs });

  it('sees no jump while both clocks advance together, however long the tick', () => {
    assert.equal(wallClockJumped(at(1_000_000, 50), at(1_005_000, 5_050)), false);
    assert.equal(wallClockJumped(at(1_000_000, 50), at(4_600_000, 3_600_050)), false);
  });

  it('sees a resume from suspend: the wall clock advanced while the monotonic clock stood still', () => {
    assert.equal(wallClockJumped(at(1_000_000, 50), at(1_000_000 + 3_600_000 + 5_000, 5_050)), true);
  });

  it('sees a clock stepped back, and ignores drift under the threshold', () => {
    assert.equal(wallClockJumped(at(1_000_000, 50), at(990_000, 5_050)), true);
    assert.equal(wallClockJumped(at(1_000_000, 50), at(1_005_000 + JUMP_THRESHOLD_MS, 5_050)), false);
    assert.equal(wallClockJumped(at(1_000_000, 50), at(1_005_001 + JUMP_THRESHOLD_MS, 5_050)), true);
  });
});

describe('GuestClocks', () => {
  const log = pino({ level: 'silent' });
  // The keeper's timer does not hold the process (a daemon's server does): the test holds it.
  let hold: NodeJS.Timeout;
  beforeEach(() => {
    hold = setInterval(() => {}, 1_000);
  });
  afterEach(() => clearInterval(hold));

  it('syncs a guest when kept, again each interval, and never after it is forgotten', async () => {
    const clocks = new GuestClocks({ intervalMs: 20, tickMs: 5, log });
    let syncs = 0;
    let thirdSync: () => void = () => {};
    const third = new Promise<void>((resolve) => {
      thirdSync = resolve;
    });
    await clocks.keep('pod-a', async () => {
      syncs += 1;
      if (syncs === 3) thirdSync();
    });
    assert.equal(syncs, 1, 'kept means synced at once');
    await third;
    clocks.forget('pod-a');
    const afterForget = syncs;
    await new Promise((resolve) => setTimeout(resolve, 60));
    assert.equal(syncs, afterForget, 'a forgotten guest is not synced any more');
  });

  it('keeps syncing the other guests when one fails', async () => {
    const clocks = new GuestClocks({ intervalMs: 10, tickMs: 5, log });
    let failing = 0;
    let healthy = 0;
    let failOnce = false;
    await clocks.keep('pod-failing', async () => {
      failing += 1;
      if (failOnce) throw new Error('VM going away');
      failOnce = true;
    });
    const healthySynced = new Promise<void>((resolve) => {
      void clocks.keep('pod-healthy', async () => {
        healthy += 1;
        if (healthy === 3) resolve();
      });
    });
    await healthySynced;
    clocks.forget('pod-failing');
    clocks.forget('pod-healthy');
    assert.ok(failing >= 2, 'the failing guest was tried again');
  });
});
