// Where kuasard serves a sandbox's Task API: a unix socket in the sandbox's own directory
// (<state_dir>/<kind>/<sandbox id>/task.sock), so that removing the sandbox removes it.
import { join } from 'node:path';
import { invalidArgument } from '../base/errors.js';

export const TASK_SOCKET_NAME = 'task.sock';
/** sun_path holds 108 bytes with the terminating NUL. */
export const MAX_SOCKET_PATH = 107;

export const taskSocketPath = (sandboxDir: string): string => join(sandboxDir, TASK_SOCKET_NAME);

/** InvalidArgument when the sandbox's task socket would not fit a unix socket address. */
export function checkTaskSocketPath(sandbox: { id: string; dir: string }): void {
  if (taskSocketPath(sandbox.dir).length > MAX_SOCKET_PATH) {
    throw invalidArgument(`create sandbox ${sandbox.id}: the id is too long for a task socket in ${sandbox.dir}`);
  }
}
