// Whether a kind's unix sockets fit: a socket's path is at most 107 bytes, and the longest of a
// kind's is each sandbox's task socket, <state_dir>/<kind>/<sandbox id>/task.sock, with CRI's
// 64-character sandbox ids (the vmm kind's agent and QMP sockets, and the console sockets, sit
// in the same directories under shorter names). Its controller socket (`listen`) must fit too, and
// so must kuasard's own admin socket (`admin_socket`), a check of the host's.
import { join } from 'node:path';
import { adminSocketPath, type Config, controllerSocketPath } from '../config/config.js';
import { MAX_SOCKET_PATH, taskSocketPath } from '../daemon/task-socket.js';
import { type CheckResult, fail, ok } from '../kind-api/checks.js';
import type { KindName } from '../kinds/index.js';

/** CRI's sandbox ids: 64 hexadecimal characters. */
const CRI_SANDBOX_ID_LENGTH = 64;

export function socketPathsCheck(config: Config, kind: KindName): CheckResult {
  const name = 'socket paths';
  const task = taskSocketPath(join(config.state_dir, kind, 'x'.repeat(CRI_SANDBOX_ID_LENGTH)));
  const listen = controllerSocketPath(config, kind);
  const problems: string[] = [];
  const fixes: string[] = [];
  if (task.length > MAX_SOCKET_PATH) {
    const longest = config.state_dir.length - (task.length - MAX_SOCKET_PATH);
    problems.push(`a pod's task socket would have ${task.length} characters (state_dir ${config.state_dir} is too long)`);
    fixes.push(`set state_dir to at most ${longest} characters (the default is /run/kuasar)`);
  }
  if (listen.length > MAX_SOCKET_PATH) {
    problems.push(`the controller socket ${listen} has ${listen.length} characters`);
    fixes.push(`set [kinds.${kind}] listen to a shorter path`);
  }
  if (problems.length > 0)
    return fail(name, `${problems.join('; ')}: a unix socket's path has at most ${MAX_SOCKET_PATH}`, fixes.join('; '));
  return ok(name, `a pod's task socket has ${task.length} of ${MAX_SOCKET_PATH} characters, the controller's ${listen.length}`);
}

/** kuasard's admin socket (`kuasar ps`, `inspect`, `exec`): one per daemon, whatever the kinds. */
export function adminSocketCheck(config: Config): CheckResult {
  const name = 'admin socket';
  const path = adminSocketPath(config);
  if (path.length > MAX_SOCKET_PATH) {
    return fail(
      name,
      `the admin socket ${path} has ${path.length} characters: a unix socket's path has at most ${MAX_SOCKET_PATH}`,
      'set admin_socket to a shorter path',
    );
  }
  return ok(name, `${path} has ${path.length} of ${MAX_SOCKET_PATH} characters`);
}
