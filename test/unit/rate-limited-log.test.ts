// The rate-limited warning log: a few lines per message and interval, the rest counted and told.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RateLimitedLog } from '../../src/base/rate-limited-log.js';

interface Line {
  fields: Record<string, unknown>;
  message: string;
}

/**
 * The next line `log` gets. The limiter's summary timer does not keep a process alive (a daemon
 * has other reasons to live): the test does, while it waits.
 */
async function nextLine(log: ReturnType<typeof recorder>): Promise<Line> {
  const keepAlive = setInterval(() => undefined, 1000);
  try {
    return await log.next();
  } finally {
    clearInterval(keepAlive);
  }
}

/** A logger that records its lines and wakes a waiter on each. */
function recorder(): { lines: Line[]; next: () => Promise<Line>; warn: (fields: Record<string, unknown>, message: string) => void } {
  const lines: Line[] = [];
  let waiter: ((line: Line) => void) | undefined;
  return {
    lines,
    next: () => new Promise((resolve) => (waiter = resolve)),
    warn(fields, message) {
      const line = { fields, message };
      lines.push(line);
      const wake = waiter;
      waiter = undefined;
      wake?.(line);
    },
  };
}

describe('RateLimitedLog', () => {
  it('logs the first lines of each message in an interval and then tells how many it left out', async () => {
    const log = recorder();
    const limited = new RateLimitedLog(log, { burst: 3, intervalMs: 200 });
    for (let i = 0; i < 1000; i++) limited.warn({ i }, 'bad frame');
    limited.warn({ other: true }, 'another trouble');
    assert.deepEqual(
      log.lines.map((line) => [line.message, line.fields]),
      [
        ['bad frame', { i: 0 }],
        ['bad frame', { i: 1 }],
        ['bad frame', { i: 2 }],
        ['another trouble', { other: true }],
      ],
    );
    const summary = await nextLine(log);
    assert.deepEqual(summary, { fields: { suppressed: 997 }, message: 'bad frame (997 more like it suppressed)' });
  });

  it('starts a new interval for a message once the last one is over', async () => {
    const log = recorder();
    const limited = new RateLimitedLog(log, { burst: 1, intervalMs: 50 });
    limited.warn({}, 'm');
    limited.warn({}, 'm');
    await nextLine(log); // the summary closes the first interval
    limited.warn({ again: true }, 'm');
    assert.deepEqual(log.lines.at(-1), { fields: { again: true }, message: 'm' });
    assert.equal(log.lines.length, 3);
  });
});
