// The HTTP endpoint Prometheus scrapes: GET /metrics on the `metrics_address` (a unix socket, or a
// loopback TCP port), nothing else. node:http only: the endpoint costs the daemon one listener.
import { chmod, mkdir, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import type { MetricsAddress } from '../config/metrics-address.js';

export const METRICS_PATH = '/metrics';

export interface MetricsServer {
  close(): Promise<void>;
}

export async function serveMetrics(
  address: MetricsAddress,
  scrape: () => Promise<{ text: string; contentType: string }>,
  log: Logger,
): Promise<MetricsServer> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://metrics').pathname;
    if (req.method !== 'GET' || path !== METRICS_PATH) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`only GET ${METRICS_PATH} is served here\n`);
      return;
    }
    scrape().then(
      ({ text, contentType }) => res.writeHead(200, { 'content-type': contentType }).end(text),
      (err: unknown) => {
        log.error({ err }, 'metrics scrape failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('scrape failed\n');
      },
    );
  });
  // A scraper that keeps its connection idle holds nothing of ours for long.
  server.keepAliveTimeout = 5_000;
  if (address.kind === 'unix') {
    await mkdir(dirname(address.path), { recursive: true, mode: 0o700 });
    await rm(address.path, { force: true });
    await listen(server, { path: address.path });
    // Pod names and figures are the node's business: root's only, as the other sockets.
    await chmod(address.path, 0o600);
  } else {
    await listen(server, { host: address.host, port: address.port });
  }
  log.info({ address }, 'metrics served');
  return {
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      if (address.kind === 'unix') await rm(address.path, { force: true });
    },
  };
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
