// The client side of kuasard's admin socket (src/daemon/admin-api.ts): one HTTP request, its
// JSON answer, and errors an operator can act on (no daemon, not root, what kuasard refused).
import { request } from 'node:http';
import type { ErrorBody } from '../daemon/admin-api.js';

/** Why the socket could not be reached, by the connect's errno. */
function unreachable(socket: string, err: NodeJS.ErrnoException): Error {
  switch (err.code) {
    case 'EACCES':
    case 'EPERM':
      return new Error(`permission denied on ${socket}: kuasard's admin socket is root's only (run this as root)`);
    case 'ENOENT':
      return new Error(`no admin socket at ${socket}: is kuasard running with this state directory? (--state-dir, --config)`);
    case 'ECONNREFUSED':
      return new Error(`nothing listens on ${socket}: kuasard is not running`);
    default:
      return new Error(`cannot reach kuasard at ${socket}: ${err.message}`);
  }
}

/** Sends one request to the admin socket; kuasard's answer, or an Error saying what it refused and why. */
export function askKuasard<T>(socket: string, method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath: socket, path, method, headers: payload === undefined ? {} : { 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let answer: unknown;
          try {
            answer = JSON.parse(text);
          } catch {
            return reject(new Error(`kuasard answered ${res.statusCode} with something that is not JSON: ${text.slice(0, 200)}`));
          }
          if (res.statusCode === 200) return resolve(answer as T);
          const { error } = answer as ErrorBody;
          reject(new Error(`${error?.code ?? res.statusCode}: ${error?.message ?? text}`));
        });
      },
    );
    req.on('error', (err: NodeJS.ErrnoException) => reject(err.syscall === 'connect' ? unreachable(socket, err) : err));
    req.end(payload);
  });
}
