// Serves a prom-client registry at GET /metrics (and /healthz) for Prometheus to scrape.

import http from 'node:http';
import type { Registry } from 'prom-client';
import { RescaleError, errorMessage } from '../contracts/errors.js';
import type { Closeable } from '../contracts/closeable.js';
import type { Logger } from '../contracts/logger.js';
import { parseHostPort } from './cluster-options.js';

export interface MetricsServer extends Closeable {
  readonly port: number;
}

export async function startMetricsServer(listen: string, registry: Registry, logger: Logger): Promise<MetricsServer> {
  const { host, port } = parseHostPort(listen, '--metrics');
  const server = http.createServer((request, response) => {
    if (request.url === '/healthz') {
      response.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    if (request.url !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('see /metrics\n');
      return;
    }
    registry.metrics().then(
      (body) => response.writeHead(200, { 'content-type': registry.contentType }).end(body),
      (error: unknown) => {
        logger.log('warn', 'metrics collection failed', { error: errorMessage(error) });
        response.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n');
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (cause) =>
      reject(
        new RescaleError(
          'CONFIG_INVALID',
          `cannot serve metrics on ${listen}: ${errorMessage(cause)}; choose a free HOST:PORT with --metrics`,
          { cause },
        ),
      ),
    );
    server.listen(port, host, resolve);
  });
  const address = server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  logger.log('info', 'metrics listening', { address: `${host}:${bound}`, path: '/metrics' });
  const close = (): Promise<void> => new Promise<void>((resolve) => server.close(() => resolve()));
  return { port: bound, close, [Symbol.asyncDispose]: close };
}
