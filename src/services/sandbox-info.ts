// What a verbose Controller.Status tells: CRI passes its `info` map through as the verbose
// PodSandboxStatus info (what `crictl inspectp` shows). containerd's own pod sandbox controller
// fills `info["info"]` with one JSON object (internal/cri/types.SandboxInfo); the same keys are
// used here where they apply, so tools read kuasar pods as they read runc-handler ones. There is
// no pause container, so its runtimeSpec, image and snapshot have nothing to stand for.
import { existsSync } from 'node:fs';
import type { ControllerCreateRequest } from '../api/containerd/services/sandbox/v1/sandbox_pb.js';
import type { PodNamespaces } from '../kind-api/kind.js';
import type { SandboxRecord } from '../base/model.js';

/**
 * CRI attaches its own record of the pod to the sandbox, under this extension (a Go struct that
 * containerd's typeurl encodes as JSON): the config, the runtime handler, the netns path, the
 * pod's IPs and the CNI result.
 */
const CRI_METADATA_EXTENSION = 'metadata';

/** What is kept of the Create request, to be shown back (SandboxRecord.createInfo). */
interface CreateInfo {
  /** The runtime type containerd's configuration gives the handler (runtime_type). */
  runtimeType: string;
  /** CRI's metadata extension as it sent it: {"Version":"v1","Metadata":{...}}. */
  sandboxMetadata?: { Metadata?: Record<string, unknown> };
}

export function createInfoOf(req: ControllerCreateRequest): Record<string, unknown> {
  const info: CreateInfo = { runtimeType: req.sandbox?.runtime?.name ?? '' };
  const metadata = req.sandbox?.extensions[CRI_METADATA_EXTENSION];
  if (metadata) {
    try {
      const parsed: unknown = JSON.parse(new TextDecoder().decode(metadata.value));
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) info.sandboxMetadata = parsed;
    } catch {
      // Not CRI's JSON record: there is nothing of it to show.
    }
  }
  return { ...info };
}

/** containerd's process status words for the task that stands for the pod. */
const processStatus: Record<SandboxRecord['phase'], string> = { created: 'created', ready: 'running', stopped: 'stopped' };

/** The verbose `info` map of a sandbox. */
export function verboseInfo(record: SandboxRecord, sandboxer: string, namespaces: PodNamespaces): Record<string, string> {
  const created = (record.createInfo ?? {}) as Partial<CreateInfo>;
  const metadata = created.sandboxMetadata?.Metadata ?? {};
  const info = {
    pid: record.pid,
    processStatus: processStatus[record.phase],
    ...(record.netnsPath ? { netNamespaceClosed: !existsSync(record.netnsPath) } : {}),
    runtimeType: created.runtimeType ?? '',
    runtimeHandler: metadata['RuntimeHandler'] ?? '',
    sandboxer,
    config: metadata['Config'] ?? null,
    cniResult: metadata['CNIResult'] ?? null,
    sandboxMetadata: created.sandboxMetadata ?? null,
    namespaces,
  };
  return { info: JSON.stringify(info) };
}
