// A typed bridge between protobuf-es service descriptors (src/api) and @grpc/grpc-js.
//
// Servers: grpcServiceDefinition() + grpcServiceImplementation() turn a generated service and a
// set of promise-returning handlers into what grpc.Server.addService() takes; thrown errors
// become gRPC statuses through toStatus(), so handlers only ever throw RuntimeErrors.
// Clients: GrpcChannel.client() gives an object with one async function per method; failures
// arrive as RuntimeError carrying the status code and the server's message.

import * as grpc from '@grpc/grpc-js';
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type DescService,
  type MessageInitShape,
  type MessageShape,
} from '@bufbuild/protobuf';
import { Code, RuntimeError, toStatus } from '../base/errors.js';

/** containerd's limit for gRPC messages; CRI replies (ListContainers, ExecSync) can be large. */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

const DEFAULT_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
};

/** The HTTP/2 path of a method, e.g. "/containerd.services.sandbox.v1.Controller/Create". */
export function grpcMethodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

function serializer(schema: DescMessage): (message: MessageShape<DescMessage>) => Buffer {
  return (message) => {
    const bytes = toBinary(schema, message);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

function deserializer(schema: DescMessage): (bytes: Buffer) => MessageShape<DescMessage> {
  return (bytes) => fromBinary(schema, bytes);
}

/**
 * A request that did not decode. grpc-js answers a throwing deserializer with INTERNAL, which
 * blames the server for the client's bytes; the unary implementation answers this one with
 * InvalidArgument instead.
 */
class UndecodableRequest {
  constructor(readonly reason: string) {}
}

function lenientDeserializer(schema: DescMessage): (bytes: Buffer) => MessageShape<DescMessage> | UndecodableRequest {
  return (bytes) => {
    try {
      return fromBinary(schema, bytes);
    } catch (err) {
      return new UndecodableRequest(err instanceof Error ? err.message : String(err));
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Server side

/**
 * The grpc-js service definition of a generated service. Keys are the methods' local names
 * (as in the generated descriptor: `create`, `runPodSandbox`), so an implementation object keyed
 * the same way fits.
 */
export function grpcServiceDefinition(service: DescService): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<MessageShape<DescMessage>, MessageShape<DescMessage>>> = {};
  for (const method of service.methods) {
    const unary = method.methodKind === 'unary';
    definition[method.localName] = {
      path: grpcMethodPath(method),
      originalName: method.name,
      requestStream: method.methodKind === 'client_streaming' || method.methodKind === 'bidi_streaming',
      responseStream: method.methodKind === 'server_streaming' || method.methodKind === 'bidi_streaming',
      requestSerialize: serializer(method.input),
      // Unary requests are served by grpcServiceImplementation, which answers bad bytes itself.
      // (grpc-js's types know only messages here; it hands any value on to the implementation.)
      requestDeserialize: unary
        ? (lenientDeserializer(method.input) as (bytes: Buffer) => MessageShape<DescMessage>)
        : deserializer(method.input),
      responseSerialize: serializer(method.output),
      responseDeserialize: deserializer(method.output),
    };
  }
  return definition;
}

/** What a server handler learns about the call besides the request. */
export interface GrpcCallContext {
  /** The method's full path, for logs. */
  readonly path: string;
  /** Request metadata: the first value of every text key (e.g. `containerd-namespace`). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Aborted when the client cancels the call, its deadline passes, or the connection drops. */
  readonly signal: AbortSignal;
}

type UnaryMethodKeys<S extends DescService> = {
  [K in keyof S['method']]: S['method'][K] extends { methodKind: 'unary' } ? K : never;
}[keyof S['method']];

type UnaryHandler<M extends DescMethod> = (
  request: MessageShape<M['input']>,
  context: GrpcCallContext,
) => Promise<MessageInitShape<M['output']>>;

/** One handler per unary method of S, keyed by local name. */
export type GrpcUnaryHandlers<S extends DescService> = {
  [K in UnaryMethodKeys<S>]: UnaryHandler<S['method'][K]>;
};

export interface GrpcImplementationOptions {
  /** Sees every error a handler throws before it is turned into a status (for logging). */
  onError?: (path: string, error: unknown) => void;
}

/**
 * Adapts promise-returning handlers to grpc-js callbacks. A thrown error is answered with
 * toStatus(error): a RuntimeError keeps its code and message, anything else becomes Internal.
 * Streaming methods of the service are not served (grpc-js answers Unimplemented).
 */
export function grpcServiceImplementation<S extends DescService>(
  service: S,
  handlers: GrpcUnaryHandlers<S>,
  options: GrpcImplementationOptions = {},
): grpc.UntypedServiceImplementation {
  const implementation: grpc.UntypedServiceImplementation = {};
  const byName = handlers as unknown as Record<string, UnaryHandler<DescMethod> | undefined>;
  for (const method of service.methods) {
    const handler = byName[method.localName];
    if (method.methodKind !== 'unary' || handler === undefined) continue;
    const path = grpcMethodPath(method);
    implementation[method.localName] = (
      call: grpc.ServerUnaryCall<MessageShape<DescMessage>, MessageShape<DescMessage>>,
      callback: grpc.sendUnaryData<MessageShape<DescMessage>>,
    ) => {
      const abort = new AbortController();
      call.once('cancelled', () => abort.abort(new RuntimeError(Code.Cancelled, `${path}: call cancelled`)));
      const context: GrpcCallContext = { path, metadata: textMetadata(call.metadata), signal: abort.signal };
      // Inside an async function, a handler that throws synchronously or returns a response
      // create() rejects still ends in a status instead of an unhandled exception.
      const respond = async () => {
        const request: unknown = call.request;
        if (request instanceof UndecodableRequest) {
          throw new RuntimeError(Code.InvalidArgument, `${path}: invalid ${method.input.typeName}: ${request.reason}`);
        }
        return create(method.output, await handler(call.request, context));
      };
      respond().then(
        (response) => callback(null, response),
        (error: unknown) => {
          options.onError?.(path, error);
          const status = toStatus(error);
          callback({ code: status.code as number as grpc.status, details: status.message });
        },
      );
    };
  }
  return implementation;
}

/** Registers a generated service with its handlers on a grpc-js server. */
export function addGrpcService<S extends DescService>(
  server: grpc.Server,
  service: S,
  handlers: GrpcUnaryHandlers<S>,
  options?: GrpcImplementationOptions,
): void {
  server.addService(grpcServiceDefinition(service), grpcServiceImplementation(service, handlers, options));
}

function textMetadata(metadata: grpc.Metadata): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [key, value] of Object.entries(metadata.getMap())) {
    if (typeof value === 'string') result[key] = value;
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Client side

export interface GrpcCallOptions {
  /** Fail with DeadlineExceeded if the call has not ended within this many milliseconds. */
  timeoutMs?: number;
  /** Extra request metadata, merged over the channel's default metadata. */
  metadata?: Record<string, string>;
  /** Cancels the call; the promise rejects with Cancelled. */
  signal?: AbortSignal;
}

type UnaryClientMethod<M extends DescMethod> = (
  request: MessageInitShape<M['input']>,
  options?: GrpcCallOptions,
) => Promise<MessageShape<M['output']>>;

type ServerStreamingClientMethod<M extends DescMethod> = (
  request: MessageInitShape<M['input']>,
  options?: GrpcCallOptions,
) => AsyncIterable<MessageShape<M['output']>>;

type ClientMethod<M extends DescMethod> = M extends { methodKind: 'unary' }
  ? UnaryClientMethod<M>
  : M extends { methodKind: 'server_streaming' }
    ? ServerStreamingClientMethod<M>
    : never;

type ClientMethodKeys<S extends DescService> = {
  [K in keyof S['method']]: ClientMethod<S['method'][K]> extends never ? never : K;
}[keyof S['method']];

/**
 * A typed client of service S: one function per unary or server-streaming method, keyed by local
 * name. Requests may be plain init objects or messages made with create().
 */
export type GrpcClient<S extends DescService> = {
  readonly [K in ClientMethodKeys<S>]: ClientMethod<S['method'][K]>;
};

export interface GrpcChannelOptions {
  /** Metadata sent with every call, e.g. `{ 'containerd-namespace': 'k8s.io' }`. */
  metadata?: Record<string, string>;
  /** Timeout of every call that does not set its own (Infinity: none, the default). */
  timeoutMs?: number;
  /** grpc-js channel options, merged over this module's defaults (16 MiB message limit). */
  channelOptions?: grpc.ChannelOptions;
}

/**
 * One insecure HTTP/2 connection to a target such as `unix:///run/containerd/containerd.sock`,
 * shared by the clients of several services.
 */
export class GrpcChannel {
  readonly target: string;
  private readonly connection: grpc.Client;
  private readonly defaultMetadata: Record<string, string>;
  private readonly defaultTimeoutMs: number | undefined;

  constructor(target: string, options: GrpcChannelOptions = {}) {
    this.target = target;
    this.defaultMetadata = options.metadata ?? {};
    this.defaultTimeoutMs = options.timeoutMs;
    this.connection = new grpc.Client(target, grpc.credentials.createInsecure(), {
      ...DEFAULT_CHANNEL_OPTIONS,
      ...options.channelOptions,
    });
  }

  /** A typed client of one service on this channel. */
  client<S extends DescService>(service: S): GrpcClient<S> {
    const methods: Record<string, unknown> = {};
    for (const method of service.methods) {
      if (method.methodKind === 'unary') methods[method.localName] = this.unary(method);
      else if (method.methodKind === 'server_streaming') methods[method.localName] = this.serverStreaming(method);
    }
    return methods as GrpcClient<S>;
  }

  /** Resolves once the channel is connected; rejects with DeadlineExceeded after timeoutMs. */
  waitForReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.connection.waitForReady(Date.now() + timeoutMs, (error) => {
        if (error) reject(new RuntimeError(Code.DeadlineExceeded, `${this.target}: not ready after ${timeoutMs} ms`));
        else resolve();
      });
    });
  }

  /** Closes the connection; calls still in flight fail with Cancelled or Unavailable. */
  close(): void {
    this.connection.close();
  }

  private unary(method: DescMethod): UnaryClientMethod<DescMethod> {
    const path = grpcMethodPath(method);
    return (request, options = {}) =>
      new Promise((resolve, reject) => {
        const call = this.connection.makeUnaryRequest(
          path,
          serializer(method.input),
          deserializer(method.output),
          create(method.input, request),
          this.metadataFor(options),
          this.callOptions(options),
          (error, response) => {
            options.signal?.removeEventListener('abort', cancel);
            if (error) reject(fromServiceError(error));
            else if (response === undefined) reject(new RuntimeError(Code.Internal, `${path}: empty response`));
            else resolve(response);
          },
        );
        const cancel = () => call.cancel();
        if (options.signal?.aborted) cancel();
        else options.signal?.addEventListener('abort', cancel, { once: true });
      });
  }

  private serverStreaming(method: DescMethod): ServerStreamingClientMethod<DescMethod> {
    const path = grpcMethodPath(method);
    return (request, options = {}) => {
      // Started at once, not on first iteration, so the server sees the call when the caller
      // expects it (e.g. before triggering the events it waits for).
      const call = this.connection.makeServerStreamRequest(
        path,
        serializer(method.input),
        deserializer(method.output),
        create(method.input, request),
        this.metadataFor(options),
        this.callOptions(options),
      );
      const cancel = () => call.cancel();
      if (options.signal?.aborted) cancel();
      else options.signal?.addEventListener('abort', cancel, { once: true });
      return (async function* () {
        try {
          for await (const message of call) yield message as MessageShape<DescMessage>;
        } catch (error) {
          throw fromServiceError(error);
        } finally {
          options.signal?.removeEventListener('abort', cancel);
          call.cancel();
        }
      })();
    };
  }

  private metadataFor(options: GrpcCallOptions): grpc.Metadata {
    const metadata = new grpc.Metadata();
    for (const [key, value] of Object.entries({ ...this.defaultMetadata, ...options.metadata })) {
      metadata.set(key, value);
    }
    return metadata;
  }

  private callOptions(options: GrpcCallOptions): grpc.CallOptions {
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    return timeoutMs === undefined ? {} : { deadline: Date.now() + timeoutMs };
  }
}

/** A client built on a channel of its own; close() closes that channel. */
export function createGrpcClient<S extends DescService>(
  service: S,
  target: string,
  options?: GrpcChannelOptions,
): GrpcClient<S> & { close(): void } {
  const channel = new GrpcChannel(target, options);
  return Object.assign(channel.client(service), { close: () => channel.close() });
}

/**
 * The RuntimeError for a failed call: the status code as our Code (same numbering; codes we do
 * not name become Unknown) and the server's message.
 */
export function fromServiceError(error: unknown): RuntimeError {
  if (error instanceof RuntimeError) return error;
  const { code, details, message } = error as Partial<grpc.ServiceError>;
  const known = typeof code === 'number' && Code[code] !== undefined;
  return new RuntimeError(known ? (code as number as Code) : Code.Unknown, details || message || String(error), {
    cause: error,
  });
}
