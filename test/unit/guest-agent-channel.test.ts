// The agent's port channel on two FIFOs, which behave as a virtio-serial port does for its
// reader: end-of-file at once while no host (writer) is there, data once one comes. A host that
// leaves takes its calls with it; the next one gets a fresh connection (stream ids from 1 again);
// after a protocol violation the rest of that host's bytes are discarded until it reconnects.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Duplex } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';

import { PortChannel } from '../../src/guest/agent/port-channel.js';
import { encodeHeader, FrameType } from '../../src/rpc/ttrpc/frame.js';
import { TtrpcClient, TtrpcServer } from '../../src/rpc/ttrpc/index.js';

const SERVICE = 'test.Echo';

describe('guest agent port channel', () => {
  let dir: string;
  let toGuest: string;
  let fromGuest: string;
  let ends: { read: number; write: number };
  let channel: PortChannel;
  let running: Promise<void>;
  let server: TtrpcServer;
  let abortedCalls = 0;

  before(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'kuasar-port-'));
    toGuest = path.join(dir, 'to-guest');
    fromGuest = path.join(dir, 'from-guest');
    execFileSync('mkfifo', [toGuest, fromGuest]);
    ends = {
      read: openSync(toGuest, constants.O_RDONLY | constants.O_NONBLOCK),
      // Read-write, so that opening never waits for a reader (a virtio port has no such wait).
      write: openSync(fromGuest, constants.O_RDWR | constants.O_NONBLOCK),
    };
    server = new TtrpcServer();
    server.register(SERVICE, {
      unary: {
        Echo: async ({ payload }) => payload,
        Hang: ({ signal }) =>
          new Promise((_, reject) =>
            signal.addEventListener('abort', () => {
              abortedCalls++;
              reject(signal.reason);
            }),
          ),
      },
    });
    channel = new PortChannel(ends, (stream) => server.serveStream(stream), pino({ level: 'silent' }));
    running = channel.run();
  });

  after(async () => {
    channel.stop();
    await running;
    await server.close();
    closeSync(ends.read);
    closeSync(ends.write);
    rmSync(dir, { recursive: true, force: true });
  });

  /** A host connecting to the port: its own ends of the two FIFOs. */
  function connectHost(): { client: TtrpcClient; writable: net.Socket; close(): void } {
    const writable = new net.Socket({ fd: openSync(toGuest, constants.O_WRONLY | constants.O_NONBLOCK), readable: false, writable: true });
    const readable = new net.Socket({
      fd: openSync(fromGuest, constants.O_RDONLY | constants.O_NONBLOCK),
      readable: true,
      writable: false,
    });
    const client = new TtrpcClient(Duplex.from({ readable, writable }));
    return {
      client,
      writable,
      close() {
        client.close();
        writable.destroy();
        readable.destroy();
      },
    };
  }

  const echo = async (client: TtrpcClient, text: string): Promise<string> =>
    Buffer.from(await client.call(SERVICE, 'Echo', Buffer.from(text))).toString();

  it('serves a host, drops its calls when it leaves, and serves the next one afresh', async () => {
    const first = connectHost();
    assert.equal(await echo(first.client, 'one'), 'one');
    const hanging = first.client.call(SERVICE, 'Hang', new Uint8Array(0)).catch(() => 'gone');
    // Answered while Hang waits: the connection is multiplexed.
    assert.equal(await echo(first.client, 'one again'), 'one again');
    first.close();
    assert.equal(await hanging, 'gone');
    while (abortedCalls === 0) await sleep(20);

    const second = connectHost();
    // Stream id 1 again: only a fresh connection takes it.
    assert.equal(await echo(second.client, 'two'), 'two');
    second.close();
    // The next host must come after the agent saw this one leave (as hosts must, see port-channel.ts).
    while (channel.hostConnected) await sleep(20);
  });

  it('after a protocol violation, discards until the host reconnects', async () => {
    const violator = connectHost();
    assert.equal(await echo(violator.client, 'before'), 'before');
    // A client may not send Response frames: the server ends the connection.
    violator.writable.write(encodeHeader(99, FrameType.Response, 0, 0));
    // Discarded: the port cannot tell the host its connection is gone, only its leaving ends this.
    const unanswered = violator.client.call(SERVICE, 'Echo', Buffer.from('after')).then(
      () => 'answered',
      () => 'failed',
    );
    violator.close();
    assert.equal(await unanswered, 'failed');
    while (channel.hostConnected) await sleep(20);

    const next = connectHost();
    assert.equal(await echo(next.client, 'next'), 'next');
    next.close();
  });
});
