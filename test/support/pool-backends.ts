// Backends for pool tests on 127.x addresses: HTTP servers whose health endpoint can be switched,
// that can be killed and restarted on the same port, and TLS variants; they answer with their name.

import { once } from 'node:events';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

/** A controllable HTTP backend. */
export interface PoolBackend {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** `host:port` for configs. */
  readonly address: string;
  /** Requests answered, by path (health checks included). */
  readonly hits: Map<string, number>;
  /** Requests answered on paths other than /health. */
  served: number;
  /** Connections accepted. */
  connections: number;
  /** Status /health answers (200 by default). */
  healthStatus: number;
  /** Method and Host header of the last /health request. */
  lastHealthCheck: { method: string; host: string } | null;
  /** Stops listening and resets every open connection (a crash, as seen from the network). */
  kill(): Promise<void>;
  /** Listens again on the same address and port. */
  restart(): Promise<void>;
  /** Closes for good. */
  close(): Promise<void>;
}

/**
 * Starts a backend. Paths: `/health` answers `healthStatus` with body `NAME ok`; `/sleep/MS` answers
 * after MS ms; `/status/N` answers N; anything else answers 200 with the name (header x-backend).
 * @param tls - certificate and key for HTTPS, or undefined for HTTP
 */
export async function startPoolBackend(
  name: string,
  host: string,
  tls?: { cert: string; key: string },
): Promise<PoolBackend> {
  const sockets = new Set<Socket>();
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/';
    backend.hits.set(url, (backend.hits.get(url) ?? 0) + 1);
    req.resume();
    req.on('end', () => {
      if (url === '/health') {
        backend.lastHealthCheck = { method: req.method ?? '', host: req.headers.host ?? '' };
        res.writeHead(backend.healthStatus, {
          'content-type': 'text/plain',
          'x-host': req.headers.host ?? '',
        });
        res.end(`${name} ${backend.healthStatus === 200 ? 'ok' : 'failing'}`);
        return;
      }
      backend.served++;
      if (url.startsWith('/sleep/')) {
        setTimeout(
          () => {
            res.writeHead(200, { 'x-backend': name });
            res.end(name);
          },
          Number(url.slice(7)),
        );
      } else if (url.startsWith('/status/')) {
        res.writeHead(Number(url.slice(8)), { 'x-backend': name });
        res.end(name);
      } else {
        res.writeHead(200, { 'x-backend': name, 'content-type': 'text/plain' });
        res.end(name);
      }
    });
  };
  const make = (): Server => {
    const s = tls ? createHttpsServer({ cert: tls.cert, key: tls.key }, handler) : createHttpServer(handler);
    s.keepAliveTimeout = 30_000;
    s.on('connection', () => {
      backend.connections++;
    });
    s.on(tls ? 'secureConnection' : 'connection', (c: Socket) => {
      sockets.add(c);
      c.on('close', () => sockets.delete(c));
    });
    return s;
  };
  let server = make();
  server.listen(0, host);
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const backend: PoolBackend = {
    name,
    host,
    port,
    address: `${host}:${port}`,
    hits: new Map(),
    served: 0,
    connections: 0,
    healthStatus: 200,
    lastHealthCheck: null,
    async kill() {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) s.resetAndDestroy();
      server.closeAllConnections();
      await closed;
    },
    async restart() {
      server = make();
      server.listen(port, host);
      await once(server, 'listening');
    },
    async close() {
      if (server.listening) await backend.kill();
    },
  };
  return backend;
}

/** The number of requests to `path` a backend answered. */
export function hitsOf(b: PoolBackend, path: string): number {
  return b.hits.get(path) ?? 0;
}

/** Polls `test` every 10 ms until it holds or `timeoutMs` passes. @returns ms waited, or -1 */
export async function waitFor(test: () => boolean, timeoutMs = 3000): Promise<number> {
  const start = Date.now();
  while (!test()) {
    if (Date.now() - start > timeoutMs) return -1;
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - start;
}
