// A small WebSocket client (RFC 6455), enough to speak to CRI's streaming server the way kubectl
// does (binary messages, one connection per exec or attach). Node 20 has no WebSocket client of
// its own without a flag.
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { request } from 'node:http';
import type { Socket } from 'node:net';

const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export const Opcode = { Continuation: 0x0, Text: 0x1, Binary: 0x2, Close: 0x8, Ping: 0x9, Pong: 0xa } as const;

export interface WebSocketFrame {
  fin: boolean;
  opcode: number;
  payload: Buffer;
}

/** Encodes one frame; a client masks every frame it sends (RFC 6455, 5.3). */
export function encodeFrame(opcode: number, payload: Buffer, mask: Buffer | null = randomBytes(4)): Buffer {
  const length = payload.length;
  const lengthBytes = length < 126 ? 0 : length < 0x10000 ? 2 : 8;
  const header = Buffer.alloc(2 + lengthBytes + (mask ? 4 : 0));
  header[0] = 0x80 | opcode;
  header[1] = (mask ? 0x80 : 0) | (lengthBytes === 0 ? length : lengthBytes === 2 ? 126 : 127);
  if (lengthBytes === 2) header.writeUInt16BE(length, 2);
  if (lengthBytes === 8) header.writeBigUInt64BE(BigInt(length), 2);
  if (!mask) return Buffer.concat([header, payload]);
  mask.copy(header, 2 + lengthBytes);
  const masked = Buffer.alloc(length);
  for (let i = 0; i < length; i++) masked[i] = payload[i]! ^ mask[i % 4]!;
  return Buffer.concat([header, masked]);
}

/** Splits a byte stream into frames; bytes of an unfinished frame wait for the next push. */
export class FrameParser {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): WebSocketFrame[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: WebSocketFrame[] = [];
    for (;;) {
      const frame = this.next();
      if (!frame) return frames;
      frames.push(frame);
    }
  }

  private next(): WebSocketFrame | undefined {
    const bytes = this.pending;
    if (bytes.length < 2) return undefined;
    const masked = (bytes[1]! & 0x80) !== 0;
    let length = bytes[1]! & 0x7f;
    let offset = 2;
    if (length === 126) {
      if (bytes.length < 4) return undefined;
      length = bytes.readUInt16BE(2);
      offset = 4;
    } else if (length === 127) {
      if (bytes.length < 10) return undefined;
      length = Number(bytes.readBigUInt64BE(2));
      offset = 10;
    }
    const maskOffset = offset;
    if (masked) offset += 4;
    if (bytes.length < offset + length) return undefined;
    const payload = Buffer.from(bytes.subarray(offset, offset + length));
    if (masked) for (let i = 0; i < length; i++) payload[i] = payload[i]! ^ bytes[maskOffset + (i % 4)]!;
    this.pending = bytes.subarray(offset + length);
    return { fin: (bytes[0]! & 0x80) !== 0, opcode: bytes[0]! & 0x0f, payload };
  }
}

/**
 * An open connection. Messages (fragments joined) go to the handler given to `start`; nothing
 * is read before, so none is lost. Emits 'close' once, when the connection is gone.
 */
export class WebSocketConnection extends EventEmitter {
  private readonly parser = new FrameParser();
  private fragments: Buffer[] = [];
  private closing = false;
  private onMessage: (message: Buffer) => void = () => undefined;

  constructor(
    private readonly socket: Socket,
    /** The subprotocol the server chose. */
    readonly protocol: string,
    /** What the server sent right after its handshake. */
    private readonly head: Buffer,
  ) {
    super();
    socket.on('close', () => this.emit('close'));
    socket.on('error', () => socket.destroy());
  }

  /** Delivers every message, from the first, to `onMessage`. */
  start(onMessage: (message: Buffer) => void): void {
    this.onMessage = onMessage;
    if (this.head.length > 0) this.onData(this.head);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
  }

  send(data: Buffer): void {
    if (!this.closing) this.socket.write(encodeFrame(Opcode.Binary, data));
  }

  /** Starts the closing handshake; the server answers and closes the connection. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.socket.write(encodeFrame(Opcode.Close, Buffer.alloc(0)));
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private onData(chunk: Buffer): void {
    for (const frame of this.parser.push(chunk)) {
      switch (frame.opcode) {
        case Opcode.Ping:
          this.socket.write(encodeFrame(Opcode.Pong, frame.payload));
          break;
        case Opcode.Close:
          this.close();
          break;
        case Opcode.Pong:
          break;
        default:
          this.fragments.push(frame.payload);
          if (frame.fin) {
            const message = Buffer.concat(this.fragments);
            this.fragments = [];
            this.onMessage(message);
          }
      }
    }
  }
}

/** Opens a WebSocket to an http:// URL, offering `protocols` in order of preference. */
export function connectWebSocket(url: string, protocols: string[], timeoutMs = 10_000): Promise<WebSocketConnection> {
  const key = randomBytes(16).toString('base64');
  const expectedAccept = createHash('sha1')
    .update(key + ACCEPT_GUID)
    .digest('base64');
  return new Promise((resolve, reject) => {
    const req = request(url, {
      timeout: timeoutMs,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': key,
        'Sec-WebSocket-Protocol': protocols.join(', '),
      },
    });
    req.on('upgrade', (res, socket: Socket, head: Buffer) => {
      if (res.headers['sec-websocket-accept'] !== expectedAccept) {
        socket.destroy();
        reject(new Error(`${url}: the server's Sec-WebSocket-Accept does not match the key`));
        return;
      }
      resolve(new WebSocketConnection(socket, String(res.headers['sec-websocket-protocol'] ?? ''), head));
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => reject(new Error(`${url}: HTTP ${res.statusCode} instead of a WebSocket upgrade: ${body.trim()}`)));
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no WebSocket upgrade within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}
