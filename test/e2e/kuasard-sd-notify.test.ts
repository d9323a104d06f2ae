// kuasard under a `Type=notify` systemd unit, with systemd's end of the notification socket played
// by the test: a real kuasard tells READY=1 once its controller socket takes connections, sends
// WATCHDOG=1 at half of WATCHDOG_USEC, keeps the variables from the processes it starts (the fd
// keeper), and says STOPPING=1 when it is told to stop. Nothing of it stays behind.
import assert from 'node:assert/strict';
import { KIND_NAMES } from '../../src/kinds/index.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'smol-toml';
import { diffHost, NO_LEAKS, snapshotHost, type HostSnapshot } from '../../src/devenv/leaks.js';
import type { LeakScope } from '../../src/devenv/ownership.js';
import { listProcesses } from '../../src/devenv/processes.js';
import { eventually } from '../../src/devenv/retry.js';
import { NotifyListener } from '../fixtures/systemd/notify-listener.js';
import { KUASARD_ENTRY } from '../../src/install/kuasard-node.js';

/** systemd's WatchdogSec, in microseconds: kuasard pings every 200 ms. */
const WATCHDOG_USEC = 400_000;

const canConnect = (path: string) =>
  new Promise<boolean>((resolveConnect) => {
    const socket = createConnection(path);
    socket.once('connect', () => {
      socket.destroy();
      resolveConnect(true);
    });
    socket.once('error', () => resolveConnect(false));
  });

describe('kuasard notifies systemd', () => {
  // Short: kuasard's state directory holds task sockets three levels down.
  let dir: string;
  let scope: LeakScope;
  let hostBefore: HostSnapshot;
  let listener: NotifyListener;
  let kuasard: ChildProcess;
  let stderr = '';

  before(() => {
    hostBefore = snapshotHost();
    dir = mkdtempSync('/run/ksdn-');
    scope = { dir, cgroupName: `none-${dir.slice(-6)}`, bridge: `none-${dir.slice(-6)}`, daemonPids: [] };
    const config = join(dir, 'kuasard.toml');
    writeFileSync(
      config,
      stringify({
        state_dir: join(dir, 's'),
        containerd: { ttrpc_address: join(dir, 'containerd.sock.ttrpc') },
        // runc alone: the other kinds ("auto" by default) would listen on the node's default sockets.
        kinds: Object.fromEntries(
          KIND_NAMES.map((name) => [name, name === 'runc' ? { enabled: true, listen: join(dir, 'runc.sock') } : { enabled: false }]),
        ),
      }),
    );
    listener = new NotifyListener(`@kuasar-e2e-notify-${process.pid}`);
    kuasard = spawn(process.execPath, [KUASARD_ENTRY, '--config', config], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, NOTIFY_SOCKET: listener.address, WATCHDOG_USEC: String(WATCHDOG_USEC) },
    });
    kuasard.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  });

  after(async () => {
    if (kuasard.exitCode === null && kuasard.signalCode === null) {
      kuasard.kill('SIGKILL');
      await once(kuasard, 'exit');
    }
    listener.close();
    // The fd keeper leaves once kuasard is gone and it holds nothing.
    await eventually(async () => assert.deepEqual(diffHost(hostBefore, snapshotHost(), { scope }), NO_LEAKS), 30_000);
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends READY=1 with the kinds it serves once the controller socket takes connections', async () => {
    await listener.waitFor('READY=1', (m) => m.startsWith('READY=1\n'));
    assert.ok(await canConnect(join(dir, 'runc.sock')), 'the controller socket listens by the time READY=1 is sent');
    assert.equal(listener.received[0], 'READY=1\nSTATUS=serving runc', `the first message; kuasard's stderr: ${stderr}`);
  });

  it('sends WATCHDOG=1 again and again', async () => {
    await listener.waitFor('WATCHDOG=1', (m) => m === 'WATCHDOG=1', 3);
  });

  it('keeps NOTIFY_SOCKET and WATCHDOG_USEC from the processes it starts (the fd keeper)', () => {
    const keepers = listProcesses().filter((p) => p.cmdline.includes(join(dir, 's', 'fd-keeper.sock')));
    assert.equal(keepers.length, 1, 'kuasard started its fd keeper');
    const environ = readFileSync(`/proc/${keepers[0]?.pid}/environ`, 'utf8').split('\0');
    assert.ok(
      environ.some((v) => v.startsWith('PATH=')),
      'the environment is readable',
    );
    assert.deepEqual(
      environ.filter((v) => /^(NOTIFY_SOCKET|WATCHDOG_USEC|WATCHDOG_PID)=/.test(v)),
      [],
    );
  });

  it('sends STOPPING=1 on SIGTERM and exits 0', async () => {
    const exited = once(kuasard, 'exit');
    kuasard.kill('SIGTERM');
    await listener.waitFor('STOPPING=1', (m) => m.startsWith('STOPPING=1\n'));
    const [code] = await exited;
    assert.equal(code, 0, stderr);
    assert.equal(listener.drain().at(-1), 'STOPPING=1\nSTATUS=shutting down; containers keep running', 'nothing after STOPPING=1');
  });
});
