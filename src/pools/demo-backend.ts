// Small built-in HTTP backends for pools with `demo: true`: each answers with its own name, so a
// fresh machine can see seglb balance traffic without any other server installed.

import { createServer, type Server } from 'node:http';
import type { Endpoint } from '../net/endpoint.ts';

/**
 * Starts one demo backend.
 * @param name - the name it answers with
 * @param endpoint - loopback address and port to listen on
 * @returns the listening server
 * Responses: `GET /...` -> 200 `hello from NAME (ADDRESS): METHOD PATH from CLIENT\n`;
 * a request body is echoed back after the greeting line.
 * @throws the listen error (EADDRINUSE, ...) as a rejected promise
 */
export async function startDemoBackend(name: string, endpoint: Endpoint): Promise<Server> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 1 << 20) chunks.push(c);
    });
    req.on('end', () => {
      const xff = req.headers['x-forwarded-for'] ?? req.socket.remoteAddress;
      const greeting = `hello from ${name} (${endpoint.host}:${endpoint.port}): ${req.method} ${req.url} from ${xff}\n`;
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'x-backend': name });
      res.end(chunks.length ? Buffer.concat([Buffer.from(greeting), ...chunks]) : greeting);
    });
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(endpoint.port, endpoint.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
