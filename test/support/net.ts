// Loopback test helpers: real HTTP backends on 127.x addresses that answer with their name and
// record what they saw, and a raw HTTP client that can bind any 127.x source address.

import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders, request, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';

/** What a test backend saw for one request. */
export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly rawHeaders: readonly string[];
  readonly remoteAddress: string;
  readonly bodyBytes: number;
}

/** A running test backend. */
export interface TestBackend {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** `host:port` for configs. */
  readonly address: string;
  readonly server: Server;
  readonly seen: SeenRequest[];
  /** TCP connections accepted (to prove a denied client never reached it). */
  connections: number;
  close(): Promise<void>;
}

/**
 * Starts an HTTP backend answering `NAME` (status 200, header x-backend: NAME). Paths:
 * `/echo` echoes the request body, `/sleep/MS` answers after MS ms, `/status/N` answers N,
 * `/big/BYTES` streams BYTES bytes, anything else answers the name.
 * @param name - the name it answers with
 * @param host - loopback address to bind (default 127.0.0.1)
 */
export async function startBackend(name: string, host = '127.0.0.1'): Promise<TestBackend> {
  const seen: SeenRequest[] = [];
  const server = createServer((req, res) => {
    let bodyBytes = 0;
    const url = req.url ?? '/';
    const record = () =>
      seen.push({
        method: req.method ?? '',
        url,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        remoteAddress: req.socket.remoteAddress ?? '',
        bodyBytes,
      });
    if (url === '/echo') {
      res.writeHead(200, { 'x-backend': name, 'content-type': 'application/octet-stream' });
      req.on('data', (c: Buffer) => {
        bodyBytes += c.length;
      });
      req.pipe(res);
      req.on('end', () => record());
      return;
    }
    req.on('data', (c: Buffer) => {
      bodyBytes += c.length;
    });
    req.on('end', () => {
      record();
      if (url.startsWith('/sleep/')) {
        setTimeout(() => res.end(name), Number(url.slice(7)));
      } else if (url.startsWith('/status/')) {
        res.writeHead(Number(url.slice(8)), { 'x-backend': name });
        res.end(name);
      } else if (url.startsWith('/big/')) {
        streamBytes(res, Number(url.slice(5)), name);
      } else {
        res.writeHead(200, { 'x-backend': name, 'content-type': 'text/plain' });
        res.end(name);
      }
    });
  });
  const backend: TestBackend = {
    name,
    host,
    port: 0,
    address: '',
    server,
    seen,
    connections: 0,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  server.on('connection', () => {
    backend.connections++;
  });
  server.listen(0, host);
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return Object.assign(backend, { port, address: `${host.includes(':') ? `[${host}]` : host}:${port}` });
}

function streamBytes(res: import('node:http').ServerResponse, total: number, name: string): void {
  res.writeHead(200, {
    'x-backend': name,
    'content-length': total,
    'content-type': 'application/octet-stream',
  });
  const chunk = Buffer.alloc(64 * 1024, 97);
  let left = total;
  const pump = () => {
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      left -= n;
      if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}

/** A response as the test client saw it, or the socket error code. */
export interface ClientResult {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** Set when the request failed at the socket level (ECONNRESET for a reset at accept). */
  readonly error?: string;
}

/**
 * Sends one HTTP request over a new connection (no agent, no keep-alive).
 * @param opts.localAddress - source address to bind (any 127.x.y.z)
 * @returns the response, or `{ status: 0, error: CODE }` when the connection failed
 */
export function httpRequest(opts: {
  port: number;
  host?: string;
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  localAddress?: string;
  timeoutMs?: number;
}): Promise<ClientResult> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: opts.host ?? '127.0.0.1',
        port: opts.port,
        path: opts.path ?? '/',
        method: opts.method ?? 'GET',
        headers: opts.headers,
        localAddress: opts.localAddress,
        agent: false,
        timeout: opts.timeoutMs ?? 5000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
        res.on('error', (e: NodeJS.ErrnoException) =>
          resolve({ status: 0, headers: {}, body: '', error: e.code ?? e.message }),
        );
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) =>
      resolve({ status: 0, headers: {}, body: '', error: e.code ?? e.message }),
    );
    req.end(opts.body);
  });
}

/**
 * Opens a raw TCP connection (optionally from a given source) and resolves once connected.
 */
export async function rawConnect(port: number, host = '127.0.0.1', localAddress?: string): Promise<Socket> {
  const s = connect({ port, host, localAddress });
  await once(s, 'connect');
  return s;
}

/**
 * Writes `data` on a new connection and collects everything until the peer closes.
 * @returns the bytes received and how the connection ended ('end' = FIN, or an error code)
 */
export async function rawExchange(
  port: number,
  data: string | Buffer,
  opts: { host?: string; localAddress?: string; timeoutMs?: number } = {},
): Promise<{ received: string; ended: string }> {
  const s = connect({ port, host: opts.host ?? '127.0.0.1', localAddress: opts.localAddress });
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.on('connect', () => s.write(data));
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ received: Buffer.concat(chunks).toString('latin1'), ended: 'timeout' });
    }, opts.timeoutMs ?? 5000);
    s.on('end', () => {
      clearTimeout(timer);
      s.end();
      resolve({ received: Buffer.concat(chunks).toString('latin1'), ended: 'end' });
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(chunks).toString('latin1'), ended: e.code ?? e.message });
    });
  });
}

/** A free TCP port on 127.0.0.1 that nothing listens on (for "connection refused" backends). */
export async function closedPort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}
