// The WebSocket client and the Kubernetes channel protocol used for CRI's streaming Exec and
// Attach, against a local server that plays the streaming server's part.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { exitCodeOfStatus, RemoteCommand } from '../../src/cri/remote-command.js';
import { encodeFrame, FrameParser, Opcode } from '../../src/cri/websocket.js';

describe('WebSocket frames', () => {
  it('round-trips masked and unmasked frames of every length encoding, split anywhere', () => {
    for (const size of [0, 5, 125, 126, 65_535, 65_536, 200_000]) {
      const payload = Buffer.alloc(size, 7);
      for (const mask of [null, Buffer.from([1, 2, 3, 4])]) {
        const bytes = encodeFrame(Opcode.Binary, payload, mask);
        const parser = new FrameParser();
        const cut = Math.floor(bytes.length / 2);
        const frames = [...parser.push(bytes.subarray(0, 1)), ...parser.push(bytes.subarray(1, cut)), ...parser.push(bytes.subarray(cut))];
        assert.equal(frames.length, 1, `size ${size}`);
        assert.deepEqual([frames[0]!.fin, frames[0]!.opcode], [true, Opcode.Binary]);
        assert.ok(frames[0]!.payload.equals(payload), `size ${size}, mask ${mask ? 'yes' : 'no'}`);
      }
    }
  });

  it('masks what a client sends', () => {
    const bytes = encodeFrame(Opcode.Binary, Buffer.from('abc'));
    assert.equal(bytes[1]! & 0x80, 0x80);
    assert.notDeepEqual([...bytes.subarray(6)], [...Buffer.from('abc')]);
  });

  it('reads the exit code from the final status', () => {
    assert.equal(exitCodeOfStatus({ status: 'Success' }), 0);
    const failed = { status: 'Failure', reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: '7' }] } };
    assert.equal(exitCodeOfStatus(failed), 7);
    assert.equal(exitCodeOfStatus({ status: 'Failure', reason: 'InternalError' }), undefined);
  });
});

describe('a remote command over WebSocket', () => {
  let server: Server;
  let url: string;
  /** What the fake streaming server received, by channel. */
  const received: number[][] = [];
  const pongs: string[] = [];

  before(async () => {
    server = createServer((_req, res) => res.writeHead(404).end('not a websocket'));
    server.on('upgrade', (req, socket: Socket) => {
      if (!req.url?.startsWith('/exec/')) {
        socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nno stream');
        return;
      }
      const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n`,
      );
      const send = (channel: number, data: string) =>
        socket.write(encodeFrame(Opcode.Binary, Buffer.concat([Buffer.from([channel]), Buffer.from(data)]), null));
      const parser = new FrameParser();
      socket.on('data', (chunk: Buffer) => {
        for (const frame of parser.push(chunk)) {
          if (frame.opcode === Opcode.Close) {
            socket.end();
            continue;
          }
          if (frame.opcode === Opcode.Pong) {
            pongs.push(frame.payload.toString());
            continue;
          }
          received.push([...frame.payload]);
          // The fake process echoes stdin to stdout and exits 3 once stdin is closed.
          if (frame.payload[0] === 0) send(1, frame.payload.subarray(1).toString());
          if (frame.payload[0] === 255) {
            send(
              3,
              JSON.stringify({ status: 'Failure', reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: '3' }] } }),
            );
            socket.write(encodeFrame(Opcode.Close, Buffer.alloc(0), null));
          }
        }
      });
      socket.write(encodeFrame(Opcode.Ping, Buffer.from('p'), null));
      send(1, '');
      send(2, 'to stderr');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/exec/token`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('negotiates v5, carries stdin, stdout, stderr, resizes and the close of stdin, and reports the exit code', async () => {
    const command = await RemoteCommand.connect(url);
    assert.equal(command.protocol, 'v5.channel.k8s.io');
    command.writeStdin('hello');
    assert.equal(await command.waitForStdout(/hello/, 5_000), 'hello');
    command.resize(100, 40);
    command.closeStdin();
    const result = await command.done;
    assert.deepEqual(result, { stdout: 'hello', stderr: 'to stderr', exitCode: 3, failure: 'NonZeroExitCode' });
    assert.deepEqual(
      received.map((message) => message[0]),
      [0, 4, 255],
    );
    assert.deepEqual(JSON.parse(Buffer.from(received[1]!.slice(1)).toString()), { Width: 100, Height: 40 });
    assert.deepEqual(received[2], [255, 0]);
    assert.deepEqual(pongs, ['p'], 'a ping is answered');
  });

  it('fails clearly when the server does not upgrade', async () => {
    await assert.rejects(RemoteCommand.connect(url.replace('/exec/', '/expired/')), /HTTP 404 instead of a WebSocket upgrade: no stream/);
  });
});
