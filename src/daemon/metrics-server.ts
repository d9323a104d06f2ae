// The HTTP endpoint Prometheus scrapes: GET /metrics on the `metrics_address` (a unix socket, or a
// loopback TCP port), nothing else. node:http only: the endpoint costs the daemon one listener.
import { createServer } from 'node:http';
import type { Logger } from 'pino';
import type { MetricsAddress } from '../config/metrics-address.js';
import { closeHttp, listenHttp } from './http-listen.js';

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
  await listenHttp(server, address);
  log.info({ address }, 'metrics served');
  return { close: () => closeHttp(server, address) };
}
