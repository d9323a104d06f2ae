// kuasard's small HTTP endpoints (the metrics, the admin socket) listen and close alike: on a
// unix socket they make its directory (0700), replace a stale socket file, make the socket
// root's only (0600) and remove it at close; on TCP they just listen.
import { chmod, mkdir, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { dirname } from 'node:path';

export type HttpAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export async function listenHttp(server: Server, address: HttpAddress): Promise<void> {
  if (address.kind === 'tcp') return listen(server, { host: address.host, port: address.port });
  await mkdir(dirname(address.path), { recursive: true, mode: 0o700 });
  await rm(address.path, { force: true });
  await listen(server, { path: address.path });
  // Pods, their names and figures are the node's business: root's only, as the other sockets.
  await chmod(address.path, 0o600);
}

/** Ends every connection and the listener; a unix socket's file goes with it. */
export async function closeHttp(server: Server, address: HttpAddress): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address.kind === 'unix') await rm(address.path, { force: true });
}

function listen(server: Server, where: { path: string } | { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(where, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
