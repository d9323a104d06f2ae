// One wasm pod: a directory for its containers' guest filesystems, and its containers. Nothing
// runs for the pod itself.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { CgroupMetrics } from '../../base/metrics.js';
import type { ContainerContext, KindSandbox, PodNamespaces, SandboxContext } from '../../kind-api/kind.js';
import { unmountRecursive } from '../../linux/mount.js';
import { memoryMetrics, WasmContainer, type WasmEnvironment } from './container.js';

export class WasmSandbox implements KindSandbox {
  private readonly containers = new Set<WasmContainer>();
  private readonly containersDir: string;

  constructor(
    private readonly env: WasmEnvironment,
    private readonly context: SandboxContext,
  ) {
    this.containersDir = join(context.dir, 'containers');
  }

  static async create(env: WasmEnvironment, context: SandboxContext): Promise<WasmSandbox> {
    const sandbox = new WasmSandbox(env, context);
    await mkdir(sandbox.containersDir, { recursive: true });
    return sandbox;
  }

  state(): null {
    return null;
  }

  async start(): Promise<{ pid: number }> {
    return { pid: 0 };
  }

  taskAddress(): undefined {
    return undefined;
  }

  async stop(): Promise<void> {
    // The engine has stopped every container; the pod holds nothing else that runs.
  }

  async destroy(): Promise<void> {
    await unmountRecursive(this.context.dir);
  }

  /** The pod's figures: the linear memory of its running instances. */
  async metrics(): Promise<CgroupMetrics> {
    let usage = 0;
    for (const container of this.containers) usage += container.memoryInUse();
    return memoryMetrics(usage);
  }

  async update(): Promise<void> {
    // Nothing of a wasm pod follows the pod spec's updatable fields.
  }

  namespaces(): PodNamespaces {
    return {};
  }

  async createContainer(container: ContainerContext): Promise<WasmContainer> {
    const created = await WasmContainer.create(this.env, this.pod(), container);
    this.containers.add(created);
    return created;
  }

  async restoreContainer(container: ContainerContext): Promise<WasmContainer> {
    const restored = WasmContainer.restore(this.pod(), container);
    this.containers.add(restored);
    return restored;
  }

  /** What a container needs of its pod. */
  private pod() {
    return {
      containersDir: this.containersDir,
      streams: this.context.streams,
      onDelete: (container: WasmContainer) => this.containers.delete(container),
    };
  }
}
