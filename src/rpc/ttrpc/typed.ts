// Typed ttrpc on top of protobuf-es generated services: messages are decoded and encoded here,
// so service code deals in generated message types and the raw layer in bytes.

import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type MessageInitShape,
  type MessageShape,
} from '@bufbuild/protobuf';
import type { GenService, GenServiceMethods } from '@bufbuild/protobuf/codegenv2';
import { Code, RuntimeError, invalidArgument } from '../../base/errors.js';
import type { CallOptions, TtrpcClient } from './client.js';
import { errorMessage } from './envelope.js';
import type { CallContext, ServerStream, ServiceHandlers, StreamHandler, TtrpcServer, UnaryHandler } from './server.js';

type MethodShape = GenServiceMethods[string];
type Input<M extends MethodShape> = MessageShape<M['input']>;
type OutputInit<M extends MethodShape> = MessageInitShape<M['output']>;

/** A streaming call with messages decoded from and encoded to the method's types. */
export interface TypedServerStream<In, OutInit, Scope = unknown> extends CallContext<Scope>, AsyncIterable<In> {
  send(message: OutInit): Promise<void>;
  close(): void;
}

export type UnaryImpl<M extends MethodShape, Scope = unknown> = (request: Input<M>, context: CallContext<Scope>) => Promise<OutputInit<M>>;

/** Client-streaming methods answer once, when the client has sent everything; the others stream back. */
export type StreamImpl<M extends MethodShape, Scope = unknown> = (
  stream: TypedServerStream<Input<M>, OutputInit<M>, Scope>,
) => Promise<M['methodKind'] extends 'client_streaming' ? OutputInit<M> : void>;

export type ServiceImpl<T extends GenServiceMethods, Scope = unknown> = {
  [K in keyof T]: T[K]['methodKind'] extends 'unary' ? UnaryImpl<T[K], Scope> : StreamImpl<T[K], Scope>;
};

export interface RegisterOptions {
  /** Service names to serve under; the descriptor's own full name by default. */
  names?: readonly string[];
}

/**
 * Serves a generated service. Methods missing from `impl` answer Unimplemented; a request that
 * does not decode as the method's input type answers InvalidArgument.
 */
export function registerService<T extends GenServiceMethods, Scope>(
  server: TtrpcServer<Scope>,
  service: GenService<T>,
  impl: Partial<ServiceImpl<T, Scope>>,
  options: RegisterOptions = {},
): void {
  server.register(options.names ?? [service.typeName], serviceHandlers(service, impl));
}

/**
 * A generated service's handlers, to register with any number of servers (TtrpcServer.register):
 * an implementation that takes what it serves from its calls' scope is built once for them all.
 */
export function serviceHandlers<T extends GenServiceMethods, Scope>(
  service: GenService<T>,
  impl: Partial<ServiceImpl<T, Scope>>,
): ServiceHandlers<Scope> {
  const handlers: Required<ServiceHandlers<Scope>> = { unary: {}, streams: {} };
  const implementations = impl as Record<string, ((...args: never[]) => Promise<unknown>) | undefined>;
  for (const method of service.methods) {
    // Bound, so that `impl` may be a class instance whose methods use `this`.
    const implementation = implementations[method.localName]?.bind(impl);
    if (!implementation) continue;
    if (method.methodKind === 'unary') {
      handlers.unary[method.name] = unaryHandler(method, implementation as UnaryImpl<MethodShape, Scope>);
    } else {
      handlers.streams[method.name] = streamHandler(method, implementation as AnyStreamImpl<Scope>);
    }
  }
  return handlers;
}

function unaryHandler<Scope>(method: DescMethod, implementation: UnaryImpl<MethodShape, Scope>): UnaryHandler<Scope> {
  return async ({ payload, metadata, signal, scope }) => {
    const request = decodeRequest(method, payload);
    return encode(method.output, await implementation(request, { metadata, signal, scope }));
  };
}

type Message = MessageShape<DescMessage>;
type MessageInit = MessageInitShape<DescMessage>;
/** Any StreamImpl, seen from here where the method kind is only known at run time. */
type AnyStreamImpl<Scope> = (stream: TypedServerStream<Message, MessageInit, Scope>) => Promise<MessageInit | void>;

function streamHandler<Scope>(method: DescMethod, implementation: AnyStreamImpl<Scope>): StreamHandler<Scope> {
  return async (stream) => {
    const result = await implementation(typedStream(method, stream));
    return method.methodKind === 'client_streaming' ? encode(method.output, result ?? {}) : undefined;
  };
}

function typedStream<Scope>(method: DescMethod, stream: ServerStream<Scope>): TypedServerStream<Message, MessageInit, Scope> {
  return {
    metadata: stream.metadata,
    signal: stream.signal,
    scope: stream.scope,
    async *[Symbol.asyncIterator]() {
      for await (const payload of stream) yield decodeRequest(method, payload);
    },
    send: (message) => stream.send(encode(method.output, message)),
    close: () => stream.close(),
  };
}

function decodeRequest(method: DescMethod, payload: Uint8Array): Message {
  try {
    return fromBinary(method.input, payload);
  } catch (err) {
    const what = `${method.parent.typeName}/${method.name}: invalid ${method.input.typeName}`;
    throw invalidArgument(`${what}: ${errorMessage(err)}`);
  }
}

function encode(schema: DescMessage, message: MessageInit): Uint8Array {
  return toBinary(schema, create(schema, message));
}

/** Unary methods of a generated service as async functions. */
export type TypedClient<T extends GenServiceMethods> = {
  [K in keyof T as T[K]['methodKind'] extends 'unary' ? K : never]: (
    request: MessageInitShape<T[K]['input']>,
    options?: CallOptions,
  ) => Promise<MessageShape<T[K]['output']>>;
};

export interface TypedClientOptions {
  /** The name to call the service by; the descriptor's own full name by default. */
  serviceName?: string;
}

export function typedClient<T extends GenServiceMethods>(
  client: TtrpcClient,
  service: GenService<T>,
  options: TypedClientOptions = {},
): TypedClient<T> {
  const serviceName = options.serviceName ?? service.typeName;
  const methods: Record<string, (request: MessageInit, options?: CallOptions) => Promise<Message>> = {};
  for (const method of service.methods) {
    if (method.methodKind !== 'unary') continue;
    methods[method.localName] = async (request, callOptions) => {
      const payload = await client.call(serviceName, method.name, encode(method.input, request), callOptions);
      try {
        return fromBinary(method.output, payload);
      } catch (err) {
        throw new RuntimeError(
          Code.Internal,
          `${serviceName}/${method.name}: invalid ${method.output.typeName} in response: ${errorMessage(err)}`,
        );
      }
    };
  }
  return methods as unknown as TypedClient<T>;
}
