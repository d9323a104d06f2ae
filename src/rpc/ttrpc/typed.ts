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
export interface TypedServerStream<In, OutInit> extends CallContext, AsyncIterable<In> {
  send(message: OutInit): Promise<void>;
  close(): void;
}

export type UnaryImpl<M extends MethodShape> = (request: Input<M>, context: CallContext) => Promise<OutputInit<M>>;

/** Client-streaming methods answer once, when the client has sent everything; the others stream back. */
export type StreamImpl<M extends MethodShape> = (
  stream: TypedServerStream<Input<M>, OutputInit<M>>,
) => Promise<M['methodKind'] extends 'client_streaming' ? OutputInit<M> : void>;

export type ServiceImpl<T extends GenServiceMethods> = {
  [K in keyof T]: T[K]['methodKind'] extends 'unary' ? UnaryImpl<T[K]> : StreamImpl<T[K]>;
};

export interface RegisterOptions {
  /** Service names to serve under; the descriptor's own full name by default. */
  names?: readonly string[];
}

/**
 * Serves a generated service. Methods missing from `impl` answer Unimplemented; a request that
 * does not decode as the method's input type answers InvalidArgument.
 */
export function registerService<T extends GenServiceMethods>(
  server: TtrpcServer,
  service: GenService<T>,
  impl: Partial<ServiceImpl<T>>,
  options: RegisterOptions = {},
): void {
  const handlers: Required<ServiceHandlers> = { unary: {}, streams: {} };
  const implementations = impl as Record<string, ((...args: never[]) => Promise<unknown>) | undefined>;
  for (const method of service.methods) {
    // Bound, so that `impl` may be a class instance whose methods use `this`.
    const implementation = implementations[method.localName]?.bind(impl);
    if (!implementation) continue;
    if (method.methodKind === 'unary') {
      handlers.unary[method.name] = unaryHandler(method, implementation as UnaryImpl<MethodShape>);
    } else {
      handlers.streams[method.name] = streamHandler(method, implementation as AnyStreamImpl);
    }
  }
  server.register(options.names ?? [service.typeName], handlers);
}

function unaryHandler(method: DescMethod, implementation: UnaryImpl<MethodShape>): UnaryHandler {
  return async ({ payload, metadata, signal }) => {
    const request = decodeRequest(method, payload);
    return encode(method.output, await implementation(request, { metadata, signal }));
  };
}

type Message = MessageShape<DescMessage>;
type MessageInit = MessageInitShape<DescMessage>;
/** Any StreamImpl, seen from here where the method kind is only known at run time. */
type AnyStreamImpl = (stream: TypedServerStream<Message, MessageInit>) => Promise<MessageInit | void>;

function streamHandler(method: DescMethod, implementation: AnyStreamImpl): StreamHandler {
  return async (stream) => {
    const result = await implementation(typedStream(method, stream));
    return method.methodKind === 'client_streaming' ? encode(method.output, result ?? {}) : undefined;
  };
}

function typedStream(method: DescMethod, stream: ServerStream): TypedServerStream<Message, MessageInit> {
  return {
    metadata: stream.metadata,
    signal: stream.signal,
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
