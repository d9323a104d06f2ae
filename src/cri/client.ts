// A CRI client: what kubelet speaks to containerd, for the CLI, the end-to-end tests and the
// benchmarks. A library only: it connects to a running containerd and never starts anything.

import { ContainerState, ImageService, RuntimeService, type ContainerStatus } from '../api/cri/runtime/v1/api_pb.js';
import { Code, RuntimeError } from '../base/errors.js';
import { GrpcChannel, type GrpcClient } from '../rpc/grpc.js';

export { ContainerState } from '../api/cri/runtime/v1/api_pb.js';
export { criLogText, parseCriLog, readContainerLog, type CriLogRecord, type CriLogStream } from './log.js';

/** kubelet's default --runtime-request-timeout. */
const DEFAULT_CALL_TIMEOUT_MS = 2 * 60 * 1000;

export interface CriClientOptions {
  /** Timeout of every call that sets none itself (default 2 minutes, as kubelet). */
  callTimeoutMs?: number;
}

export interface WaitOptions {
  timeoutMs: number;
  /** Time between two ContainerStatus calls (default 50 ms). */
  intervalMs?: number;
}

/** `unix:///abs/path` for a socket path; an endpoint that already has a scheme is kept. */
export function criEndpoint(socket: string): string {
  return socket.includes('://') ? socket : `unix://${socket}`;
}

export class CriClient {
  readonly runtime: GrpcClient<typeof RuntimeService>;
  readonly image: GrpcClient<typeof ImageService>;
  private readonly channel: GrpcChannel;

  /** @param socket containerd's socket: a path or `unix:///path`. */
  constructor(socket: string, options: CriClientOptions = {}) {
    this.channel = new GrpcChannel(criEndpoint(socket), { timeoutMs: options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS });
    this.runtime = this.channel.client(RuntimeService);
    this.image = this.channel.client(ImageService);
  }

  /** Resolves once the socket accepts a connection (containerd may still be starting plugins). */
  waitForReady(timeoutMs: number): Promise<void> {
    return this.channel.waitForReady(timeoutMs);
  }

  /**
   * Polls ContainerStatus until the container is in `state` and returns that status. Fails with
   * DeadlineExceeded (naming the last state seen) after timeoutMs, and at once if a call fails,
   * e.g. NotFound when the container is gone.
   */
  async waitForContainerState(id: string, state: ContainerState, options: WaitOptions): Promise<ContainerStatus> {
    const deadline = Date.now() + options.timeoutMs;
    for (;;) {
      const { status } = await this.runtime.containerStatus({ containerId: id });
      if (!status) throw new RuntimeError(Code.Internal, `container ${id}: ContainerStatus returned no status`);
      if (status.state === state) return status;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new RuntimeError(
          Code.DeadlineExceeded,
          `container ${id}: still ${ContainerState[status.state]} after ${options.timeoutMs} ms, wanted ${ContainerState[state]}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(options.intervalMs ?? 50, left)));
    }
  }

  close(): void {
    this.channel.close();
  }
}
