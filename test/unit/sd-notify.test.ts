// systemd's notification protocol as kuasard speaks it: which environment asks for what, and the
// datagrams that reach a real unix datagram socket (by path and by abstract name).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SystemdNotifier } from '../../src/linux/sd-notify.js';
import { NotifyListener } from '../fixtures/systemd/notify-listener.js';

describe('SystemdNotifier.fromEnvironment', () => {
  it('is undefined without NOTIFY_SOCKET, and takes the variables out of the environment either way', () => {
    const env: Record<string, string | undefined> = { WATCHDOG_USEC: '1000000', WATCHDOG_PID: '42', PATH: '/bin' };
    assert.equal(SystemdNotifier.fromEnvironment(env, 42), undefined);
    assert.deepEqual(env, { PATH: '/bin' });

    const withSocket: Record<string, string | undefined> = { NOTIFY_SOCKET: '/run/systemd/notify', WATCHDOG_USEC: '30000000' };
    const notifier = SystemdNotifier.fromEnvironment(withSocket, 42);
    assert.equal(notifier?.socket, '/run/systemd/notify');
    assert.equal(notifier?.watchdogIntervalMs, 15_000, 'half the watchdog period');
    assert.deepEqual(withSocket, {});
  });

  it('has no watchdog when WATCHDOG_PID names another process or WATCHDOG_USEC is not a positive number', () => {
    assert.equal(
      SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: '@x', WATCHDOG_USEC: '2000', WATCHDOG_PID: '7' }, 8)?.watchdogIntervalMs,
      undefined,
    );
    assert.equal(
      SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: '@x', WATCHDOG_USEC: '2000', WATCHDOG_PID: '8' }, 8)?.watchdogIntervalMs,
      1,
    );
    for (const usec of ['0', '-5', 'soon', '']) {
      assert.equal(SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: '@x', WATCHDOG_USEC: usec }, 8)?.watchdogIntervalMs, undefined, usec);
    }
  });

  it("refuses an address it cannot send to (systemd's vsock form), naming it", () => {
    assert.throws(() => SystemdNotifier.fromEnvironment({ NOTIFY_SOCKET: 'vsock:2:1234' }, 1), /NOTIFY_SOCKET=vsock:2:1234 is neither/);
  });
});

describe('SystemdNotifier to a real datagram socket', () => {
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'sd-notify-'));
  });

  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  for (const [what, address] of [
    ['a socket file', () => join(dir, 'notify')],
    ['an abstract name', () => `@kuasar-test-notify-${process.pid}`],
  ] as const) {
    it(`sends READY=1 with a status, WATCHDOG=1 periodically, and STOPPING=1 to ${what}`, async () => {
      const listener = new NotifyListener(address());
      try {
        const notifier = new SystemdNotifier(listener.address, 40_000);
        assert.equal(notifier.watchdogIntervalMs, 20);
        notifier.ready('serving runc, wasm');
        assert.deepEqual(listener.drain(), ['READY=1\nSTATUS=serving runc, wasm']);
        const errors: unknown[] = [];
        notifier.startWatchdog((err) => errors.push(err));
        await listener.waitFor('WATCHDOG=1', (m) => m === 'WATCHDOG=1', 3);
        notifier.stopping('shutting down\nnow');
        const received = listener.drain();
        assert.equal(received.at(-1), 'STOPPING=1\nSTATUS=shutting down now', 'one message, a status of one line');
        assert.deepEqual(errors, []);
      } finally {
        listener.close();
      }
    });
  }

  it('fails a notification nobody listens for with the errno, and the watchdog reports it without throwing', async () => {
    const notifier = new SystemdNotifier(join(dir, 'nobody'), 2_000);
    assert.throws(() => notifier.ready('x'), { name: 'ErrnoError', code: 'ENOENT' });
    const errors: unknown[] = [];
    // The watchdog's timer keeps no process alive (kuasard's servers do): this one stands in.
    const alive = setInterval(() => undefined, 1_000);
    await new Promise<void>((resolve) => {
      notifier.startWatchdog((err) => {
        errors.push(err);
        notifier.stopWatchdog();
        resolve();
      });
    });
    clearInterval(alive);
    assert.equal((errors[0] as { code?: string }).code, 'ENOENT');
  });
});
