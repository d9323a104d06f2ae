// QEMU's machine protocol (QMP), as little of it as kuasard needs: one command on a fresh
// connection to a VM's QMP socket. QMP speaks JSON lines: a greeting, then `qmp_capabilities`
// leaves negotiation mode, then each command gets a `return` or an `error` (events in between
// are skipped).
import net from 'node:net';
import { Code, RuntimeError } from '../../base/errors.js';

/** Runs `command` on the QMP socket at `socket`; resolves with its `return` value. */
export async function qmpCommand(socket: string, command: string, timeoutMs: number): Promise<unknown> {
  const connection = net.createConnection(socket);
  const replies = jsonLines(connection);
  const timer = setTimeout(() => connection.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  try {
    await new Promise<void>((resolve, reject) => {
      connection.once('connect', resolve).once('error', reject);
    });
    await nextReply(replies, 'QMP'); // the greeting
    connection.write(`${JSON.stringify({ execute: 'qmp_capabilities' })}\n`);
    await nextReply(replies, 'return');
    connection.write(`${JSON.stringify({ execute: command })}\n`);
    return await nextReply(replies, 'return');
  } catch (err) {
    throw new RuntimeError(Code.Unavailable, `QMP ${command} on ${socket}: ${(err as Error).message}`);
  } finally {
    clearTimeout(timer);
    connection.destroy();
  }
}

/** The next message carrying `key` (events and other messages are passed over); an `error` reply throws. */
async function nextReply(replies: AsyncIterator<Record<string, unknown>>, key: string): Promise<unknown> {
  for (;;) {
    const next = await replies.next();
    if (next.done) throw new Error('QMP connection closed');
    const message = next.value;
    if ('error' in message) throw new Error(`QMP error: ${JSON.stringify(message.error)}`);
    if (key in message) return message[key];
  }
}

async function* jsonLines(connection: net.Socket): AsyncGenerator<Record<string, unknown>> {
  let buffered = '';
  for await (const chunk of connection) {
    buffered += (chunk as Buffer).toString('utf8');
    for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
      const line = buffered.slice(0, end).trim();
      buffered = buffered.slice(end + 1);
      if (line) yield JSON.parse(line) as Record<string, unknown>;
    }
  }
}
