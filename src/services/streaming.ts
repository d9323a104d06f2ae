// containerd's Streaming service (containerd.services.streaming.v1.Streaming/Stream), served on
// each sandbox's task socket for handlers with io_type = "streaming". containerd opens one
// stream per stdio stream of a process before the Task call that creates the process; the
// first message names it (StreamInit{id}, "<id>-stdin|-stdout|-stderr") and is acknowledged
// with one message. After that both sides exchange containerd.types.transfer Data (bytes) and
// WindowUpdate (credits): see stream-window.ts.
//
// Each stream becomes a Node stream in the sandbox's StreamRegistry, where the kind takes it:
// stdin a Readable (containerd writes), stdout and stderr a Writable (the daemon writes).
import { EmptySchema, type Any } from '@bufbuild/protobuf/wkt';
import { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { Logger } from 'pino';
import { StreamInitSchema } from '../api/containerd/services/streaming/v1/streaming_pb.js';
import { DataSchema, WindowUpdateSchema } from '../api/containerd/types/transfer/streaming_pb.js';
import { invalidArgument } from '../base/errors.js';
import type { StreamRegistry } from '../base/streams.js';
import { RateLimitedLog, type WarnLogger } from '../base/rate-limited-log.js';
import type { TypedServerStream } from '../rpc/ttrpc/typed.js';
import { MAX_DATA_MESSAGE, ReceiveWindow, SendWindow } from './stream-window.js';
import { packAny, unpackAny } from './wkt.js';

/** What the streams of a call go to: the sandbox's (its task socket server's scope). */
export interface StreamingScope {
  readonly streams: StreamRegistry;
  readonly log: Logger;
}

type Messages = TypedServerStream<Any, Any, StreamingScope>;

/** stdout/stderr: bytes the daemon sends, within the credits containerd grants. */
class OutboundStream extends Writable {
  private readonly window = new SendWindow();
  private wake: (() => void) | undefined;

  constructor(private readonly sendMessage: (message: Any) => Promise<void>) {
    super();
  }

  grant(bytes: number): boolean {
    const accepted = this.window.grant(bytes);
    this.wakeWriter();
    return accepted;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.sendChunk(chunk).then(() => callback(), callback);
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.wakeWriter();
    callback(error);
  }

  private async sendChunk(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.destroyed) throw new Error('stream closed');
      const bytes = this.window.take(chunk.length - offset, MAX_DATA_MESSAGE);
      if (bytes === 0) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      await this.sendMessage(packAny(DataSchema, { data: chunk.subarray(offset, offset + bytes) }));
      offset += bytes;
    }
  }

  private wakeWriter(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }
}

/** stdin: bytes containerd sends, within the credits the daemon grants as they are consumed. */
class InboundStream extends Readable {
  private readonly window = new ReceiveWindow();

  constructor(
    private readonly sendMessage: (message: Any) => Promise<void>,
    /** Told when the client overruns its window: rate-limited, the client can do it at will. */
    private readonly onOverrun: (bytes: number) => void,
  ) {
    super();
  }

  /** Data from containerd. */
  receive(data: Uint8Array): void {
    if (!this.window.received(data.length)) this.onOverrun(data.length);
    if (this.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength))) this.grantDue();
  }

  /** The consumer wants more: credits for containerd, if it is running low. */
  override _read(): void {
    this.grantDue();
  }

  private grantDue(): void {
    if (this.destroyed || this.readableEnded) return;
    const grant = this.window.due();
    if (grant === 0) return;
    this.sendMessage(packAny(WindowUpdateSchema, { update: grant })).catch((err: Error) => this.destroy(err));
  }
}

/** One set for every sandbox: each call finds its registry and logger in its scope. */
export function streamingHandlers() {
  // A client breaking the flow control does so on every message: a few lines say it (per sandbox).
  const warnings = new WeakMap<StreamingScope, RateLimitedLog>();
  const warningsOf = (scope: StreamingScope) => {
    const known = warnings.get(scope);
    if (known) return known;
    const log = new RateLimitedLog(scope.log);
    warnings.set(scope, log);
    return log;
  };
  return {
    async stream(call: Messages): Promise<void> {
      const { streams: registry, log } = call.scope;
      const messages = call[Symbol.asyncIterator]();
      const first = await messages.next();
      if (first.done) return;
      const init = unpackAny(first.value, StreamInitSchema);
      if (!init?.id) throw invalidArgument(`streaming: the first message must be a StreamInit with an id, not ${first.value.typeUrl}`);
      // containerd waits for this before it uses the stream; any message will do.
      await call.send(packAny(EmptySchema, {}));
      const streamLog = log.child({ stream: init.id });
      const warnings = warningsOf(call.scope);
      if (init.id.endsWith('-stdin')) await serveInbound(init.id, messages, call, registry, streamLog, warnings);
      else await serveOutbound(init.id, messages, call, registry, streamLog, warnings);
    },
  };
}

/** stdin: Data until containerd closes its side; the stream ends early if its reader goes. */
async function serveInbound(
  id: string,
  messages: AsyncIterator<Any>,
  call: Messages,
  registry: StreamRegistry,
  log: Logger,
  warnings: WarnLogger,
) {
  const overrun = (bytes: number) => warnings.warn({ stream: id, bytes }, 'streaming stdin: containerd sent beyond its window');
  const input = new InboundStream((message) => call.send(message), overrun);
  input.on('error', (err) => log.debug({ err: err.message }, 'streaming stdin failed'));
  const readerGone = new Promise<'gone'>((resolve) => input.once('close', () => resolve('gone')));
  registry.offer(id, input);
  input.read(0); // grants the first window
  try {
    for (;;) {
      const next = await Promise.race([messages.next(), readerGone]);
      if (next === 'gone') return;
      if (next.done) break;
      const data = unpackAny(next.value, DataSchema);
      if (data) input.receive(data.data);
      else log.debug({ type: next.value.typeUrl }, 'streaming stdin: ignoring a message that is not Data');
    }
    input.push(null);
  } catch (err) {
    input.destroy(err as Error);
  }
}

/** stdout/stderr: the daemon's Data until its writer ends; containerd's side only grants credits. */
async function serveOutbound(
  id: string,
  messages: AsyncIterator<Any>,
  call: Messages,
  registry: StreamRegistry,
  log: Logger,
  warnings: WarnLogger,
) {
  const output = new OutboundStream((message) => call.send(message));
  output.on('error', (err) => log.debug({ err: err.message }, 'streaming output failed'));
  registry.offer(id, output);
  void (async () => {
    for (;;) {
      const next = await messages.next();
      if (next.done) break;
      const update = unpackAny(next.value, WindowUpdateSchema);
      if (!update) log.debug({ type: next.value.typeUrl }, 'streaming output: ignoring a message that is not a WindowUpdate');
      else if (!output.grant(update.update)) {
        warnings.warn({ stream: id, update: update.update }, 'streaming output: ignoring an invalid window update');
      }
    }
  })()
    // containerd closed its side, or the connection is gone: nobody reads any more.
    .catch(() => undefined)
    .finally(() => output.destroy());
  await finished(output).catch(() => undefined);
}
