// Task events in core terms. The service layer turns them into containerd's protobuf events
// and forwards them; core only says what happened.

export type TaskEvent =
  | {
      topic: '/tasks/create';
      containerId: string;
      bundle: string;
      pid: number;
      stdio: { stdin: string; stdout: string; stderr: string; terminal: boolean };
    }
  | { topic: '/tasks/start'; containerId: string; pid: number }
  | { topic: '/tasks/exec-added'; containerId: string; execId: string }
  | { topic: '/tasks/exec-started'; containerId: string; execId: string; pid: number }
  | { topic: '/tasks/exit'; containerId: string; execId: string; pid: number; exitStatus: number; exitedAt: string }
  | { topic: '/tasks/delete'; containerId: string; execId: string; pid: number; exitStatus: number; exitedAt: string }
  | { topic: '/tasks/oom'; containerId: string }
  | { topic: '/tasks/paused'; containerId: string }
  | { topic: '/tasks/resumed'; containerId: string };

export interface EventSink {
  /** Never throws and never blocks the caller: delivery is the sink's business. */
  publish(namespace: string, event: TaskEvent): void;
}
