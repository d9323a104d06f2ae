// The sandbox controller of a kind kuasard does not serve because its checks failed on this host
// (enabled = "auto"). containerd still has its handler registered (`kuasar config containerd`
// registers every kind that may run); instead of a refused connection, every call is answered
// FailedPrecondition with why the kind cannot run, so that `crictl runp` or kubelet's event
// tells the operator what to fix.
import type { DescService } from '@bufbuild/protobuf';
import { failedPrecondition } from '../base/errors.js';
import type { GrpcUnaryHandlers } from '../rpc/grpc.js';

export function refusingHandlers<S extends DescService>(service: S, message: string): GrpcUnaryHandlers<S> {
  const refuse = async () => {
    throw failedPrecondition(message);
  };
  return Object.fromEntries(service.methods.map((method) => [method.localName, refuse])) as unknown as GrpcUnaryHandlers<S>;
}
