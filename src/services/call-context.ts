// containerd names the caller's namespace in request metadata: `containerd-namespace` on gRPC,
// `containerd-namespace-ttrpc` on ttrpc. Events must be published in the same namespace.

export function namespaceFromMetadata(metadata: Readonly<Record<string, string[] | string | undefined>>): string {
  const value = metadata['containerd-namespace'] ?? metadata['containerd-namespace-ttrpc'];
  return (Array.isArray(value) ? value[0] : value) ?? '';
}
