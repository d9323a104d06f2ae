// Task events go to containerd's ttrpc Events/Forward endpoint. Publishing never blocks the
// caller: events wait in an ordered queue and are retried while containerd is unreachable
// (for example while it restarts), so exits that happen meanwhile still reach it.
import { create, toBinary } from '@bufbuild/protobuf';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { Logger } from 'pino';
import {
  TaskCreateSchema,
  TaskDeleteSchema,
  TaskExecAddedSchema,
  TaskExecStartedSchema,
  TaskExitSchema,
  TaskOOMSchema,
  TaskPausedSchema,
  TaskResumedSchema,
  TaskStartSchema,
} from '../api/containerd/events/task_pb.js';
import { ForwardRequestSchema } from '../api/containerd/services/events/ttrpc/v1/events_pb.js';
import type { EventSink, TaskEvent } from '../base/events.js';
import { TtrpcClient } from '../rpc/ttrpc/client.js';
import { packAny, toTimestamp } from './wkt.js';

const EVENTS_SERVICE = 'containerd.services.events.ttrpc.v1.Events';
const MAX_QUEUED = 10_000;
const RETRY_MS = 500;

/** The protobuf form of a core event, packed in an Any as containerd's shims pack theirs. */
export function packEvent(event: TaskEvent) {
  switch (event.topic) {
    case '/tasks/create':
      return packAny(TaskCreateSchema, {
        containerId: event.containerId,
        bundle: event.bundle,
        pid: event.pid,
        io: { stdin: event.stdio.stdin, stdout: event.stdio.stdout, stderr: event.stdio.stderr, terminal: event.stdio.terminal },
      });
    case '/tasks/start':
      return packAny(TaskStartSchema, { containerId: event.containerId, pid: event.pid });
    case '/tasks/exec-added':
      return packAny(TaskExecAddedSchema, { containerId: event.containerId, execId: event.execId });
    case '/tasks/exec-started':
      return packAny(TaskExecStartedSchema, { containerId: event.containerId, execId: event.execId, pid: event.pid });
    case '/tasks/exit':
      return packAny(TaskExitSchema, processEnd(event));
    case '/tasks/delete':
      return packAny(TaskDeleteSchema, processEnd(event));
    case '/tasks/oom':
      return packAny(TaskOOMSchema, { containerId: event.containerId });
    case '/tasks/paused':
      return packAny(TaskPausedSchema, { containerId: event.containerId });
    case '/tasks/resumed':
      return packAny(TaskResumedSchema, { containerId: event.containerId });
  }
}

/** The fields TaskExit and TaskDelete share: which process ended, and how. */
function processEnd(event: Extract<TaskEvent, { topic: '/tasks/exit' | '/tasks/delete' }>) {
  return {
    containerId: event.containerId,
    id: event.execId,
    pid: event.pid,
    exitStatus: event.exitStatus,
    exitedAt: toTimestamp(event.exitedAt),
  };
}

interface Queued {
  namespace: string;
  event: TaskEvent;
  at: Date;
}

export class ContainerdEventForwarder implements EventSink {
  private readonly queue: Queued[] = [];
  private client: TtrpcClient | null = null;
  private draining = false;
  private closed = false;

  constructor(
    private readonly address: string,
    private readonly log: Logger,
  ) {}

  publish(namespace: string, event: TaskEvent): void {
    if (this.queue.length >= MAX_QUEUED) {
      const dropped = this.queue.shift();
      this.log.error({ topic: dropped?.event.topic }, 'event queue full: dropping the oldest event');
    }
    this.queue.push({ namespace, event, at: new Date() });
    void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.draining || this.closed) return;
    this.draining = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const next = this.queue[0]!;
        try {
          await this.send(next);
          this.queue.shift();
        } catch (err) {
          this.log.warn({ err, topic: next.event.topic, queued: this.queue.length }, 'forwarding an event to containerd failed; retrying');
          this.client?.close();
          this.client = null;
          await new Promise((resolve) => setTimeout(resolve, RETRY_MS).unref());
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private async send({ namespace, event, at }: Queued): Promise<void> {
    this.client ??= await TtrpcClient.connect(this.address, { timeoutMs: 2000 });
    const request = create(ForwardRequestSchema, {
      envelope: { timestamp: timestampFromDate(at), namespace, topic: event.topic, event: packEvent(event) },
    });
    await this.client.call(EVENTS_SERVICE, 'Forward', toBinary(ForwardRequestSchema, request), {
      timeoutMs: 5000,
      metadata: { 'containerd-namespace-ttrpc': namespace },
    });
  }

  close(): void {
    this.closed = true;
    this.client?.close();
    this.client = null;
  }
}
