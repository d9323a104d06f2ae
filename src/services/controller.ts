// containerd's sandbox Controller (gRPC), mapped onto one kind's Sandboxer. Protocol in, core
// calls out: nothing here depends on which kind serves the sandbox.
import type { MessageInitShape } from '@bufbuild/protobuf';
import { timestampNow } from '@bufbuild/protobuf/wkt';
import type {
  ControllerCreateResponseSchema,
  ControllerCreateRequest,
  ControllerMetricsRequest,
  ControllerMetricsResponseSchema,
  ControllerPlatformRequest,
  ControllerPlatformResponseSchema,
  ControllerShutdownRequest,
  ControllerStartRequest,
  ControllerStartResponseSchema,
  ControllerStatusRequest,
  ControllerStatusResponseSchema,
  ControllerStopRequest,
  ControllerUpdateRequest,
  ControllerWaitRequest,
  ControllerWaitResponseSchema,
} from '../api/containerd/services/sandbox/v1/sandbox_pb.js';
import { sandboxerName } from '../config/containerd.js';
import { notFound, RuntimeError, Code } from '../base/errors.js';
import type { Sandboxer } from '../engine/sandboxer.js';
import type { GrpcCallContext } from '../rpc/grpc.js';
import { namespaceFromMetadata } from './call-context.js';
import { packCgroupMetrics } from './metrics.js';
import { createInfoOf, verboseInfo } from './sandbox-info.js';
import { toTimestamp } from './wkt.js';

function verboseInfoOf(sandboxer: Sandboxer, sandboxId: string): Record<string, string> {
  const sandbox = sandboxer.get(sandboxId);
  return verboseInfo(sandbox.record, sandboxerName(sandboxer.kind.name), sandbox.handle?.namespaces() ?? {});
}

/** Task API version containerd must use for our address: 3 means "sandboxed tasks, no shim". */
export const TASK_API_VERSION = 3;

export function controllerHandlers(sandboxer: Sandboxer) {
  return {
    async create(req: ControllerCreateRequest, ctx: GrpcCallContext): Promise<MessageInitShape<typeof ControllerCreateResponseSchema>> {
      // Loaded by the first Create: CRI's whole API (its descriptors, for one message) is not
      // worth its memory to a kuasard that has no pod yet.
      const { decodePodSandboxConfig, podSpecFromConfig } = await import('./pod-config.js');
      const config = decodePodSandboxConfig(req.options, req.sandboxId);
      await sandboxer.create({
        id: req.sandboxId,
        namespace: namespaceFromMetadata(ctx.metadata),
        netnsPath: req.netnsPath,
        pod: podSpecFromConfig(config),
        createInfo: createInfoOf(req),
      });
      return { sandboxId: req.sandboxId };
    },

    async start(req: ControllerStartRequest): Promise<MessageInitShape<typeof ControllerStartResponseSchema>> {
      const status = await sandboxer.start(req.sandboxId);
      return {
        sandboxId: status.id,
        pid: status.pid,
        createdAt: toTimestamp(status.createdAt),
        address: status.address,
        version: TASK_API_VERSION,
        labels: { oci_runtime_type: sandboxerName(sandboxer.kind.name) },
      };
    },

    async platform(req: ControllerPlatformRequest): Promise<MessageInitShape<typeof ControllerPlatformResponseSchema>> {
      sandboxer.get(req.sandboxId);
      return { platform: sandboxer.kind.platform() };
    },

    async stop(req: ControllerStopRequest): Promise<Record<string, never>> {
      await sandboxer.stop(req.sandboxId, req.timeoutSecs * 1000);
      return {};
    },

    async wait(req: ControllerWaitRequest): Promise<MessageInitShape<typeof ControllerWaitResponseSchema>> {
      const exit = await sandboxer.wait(req.sandboxId);
      return { exitStatus: exit.exitStatus, exitedAt: toTimestamp(exit.exitedAt) };
    },

    async status(req: ControllerStatusRequest): Promise<MessageInitShape<typeof ControllerStatusResponseSchema>> {
      const status = sandboxer.status(req.sandboxId);
      return {
        sandboxId: status.id,
        pid: status.pid,
        state: status.ready ? 'SANDBOX_READY' : 'SANDBOX_NOTREADY',
        info: {
          ...(req.verbose ? verboseInfoOf(sandboxer, req.sandboxId) : {}),
          // Why a sandbox that came back broken from a restart is not ready: always told.
          ...(status.reason ? { reason: status.reason } : {}),
        },
        createdAt: toTimestamp(status.createdAt),
        exitedAt: toTimestamp(status.exitedAt),
        address: status.address,
        version: status.address ? TASK_API_VERSION : 0,
      };
    },

    async shutdown(req: ControllerShutdownRequest): Promise<Record<string, never>> {
      try {
        await sandboxer.shutdown(req.sandboxId);
      } catch (err) {
        // Shutdown of a sandbox that is already gone has nothing left to do.
        if (!(err instanceof RuntimeError && err.code === Code.NotFound)) throw err;
      }
      return {};
    },

    async metrics(req: ControllerMetricsRequest): Promise<MessageInitShape<typeof ControllerMetricsResponseSchema>> {
      const data = packCgroupMetrics(await sandboxer.metrics(req.sandboxId));
      return { metrics: { timestamp: timestampNow(), id: req.sandboxId, data } };
    },

    async update(req: ControllerUpdateRequest): Promise<Record<string, never>> {
      if (!req.sandboxId) throw notFound('sandbox ""');
      await sandboxer.update(req.sandboxId, { fields: [...req.fields] });
      return {};
    },
  };
}
