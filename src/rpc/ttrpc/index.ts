// ttrpc, the RPC protocol containerd speaks to shims and sandboxers: framing, server, client
// and the typed layer for generated services.

export { TtrpcServer } from './server.js';
export type {
  CallContext,
  Metadata,
  PendingCall,
  ServerStream,
  ServiceHandlers,
  StreamHandler,
  TtrpcLogger,
  TtrpcServerOptions,
  UnaryCall,
  UnaryHandler,
} from './server.js';
export { TtrpcClient } from './client.js';
export type { CallOptions, ClientStream, ConnectOptions, StreamOptions } from './client.js';
export type { MetadataInit } from './envelope.js';
export { registerService, typedClient } from './typed.js';
export type {
  RegisterOptions,
  ServiceImpl,
  StreamImpl,
  TypedClient,
  TypedClientOptions,
  TypedServerStream,
  UnaryImpl,
} from './typed.js';
