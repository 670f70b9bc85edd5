// A raw TCP backend that fails on purpose, chosen by the request path: dies mid-response, resets,
// hangs, answers garbage, or closes keep-alive connections right after answering. For the fault
// tests: the client must get a correct error and seglb must not leak. Loopback only.

import { once } from 'node:events';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';

/** The failure modes, by request path. */
export const FAULTS = [
  '/die', // 200 with Content-Length 1000, 7 bytes of body, then the connection is destroyed
  '/die-chunked', // chunked 200, one chunk, then destroyed (no last chunk)
  '/reset', // TCP reset as soon as the request head arrived
  '/hang', // never answers (seglb's backend_response_ms applies)
  '/garbage', // a response that is not HTTP
  '/early-close', // a correct keep-alive response, then the connection is closed at once
  '/bad-length', // a response with two different Content-Length headers
] as const;
export type Fault = (typeof FAULTS)[number];

/** A running fault backend. */
export interface FaultBackend {
  readonly address: string;
  readonly server: Server;
  /** Requests seen per fault path. */
  readonly seen: Map<string, number>;
  close(): Promise<void>;
}

/** Starts the backend on `host` (a loopback address). */
export async function startFaultBackend(host: string): Promise<FaultBackend> {
  const seen = new Map<string, number>();
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let pending = '';
    socket.on('data', (chunk: Buffer) => {
      pending += chunk.toString('latin1');
      let end = pending.indexOf('\r\n\r\n');
      while (end >= 0 && !socket.destroyed) {
        const head = pending.slice(0, end);
        pending = pending.slice(end + 4);
        const path = head.split(' ')[1] ?? '/';
        seen.set(path, (seen.get(path) ?? 0) + 1);
        answer(socket, path);
        end = pending.indexOf('\r\n\r\n');
      }
    });
  });
  server.listen(0, host);
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    address: `${host}:${port}`,
    server,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function answer(socket: Socket, path: string): void {
  switch (path) {
    case '/die':
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\npartial');
      setImmediate(() => socket.destroy());
      return;
    case '/die-chunked':
      socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\npartial\r\n');
      setImmediate(() => socket.destroy());
      return;
    case '/reset':
      socket.resetAndDestroy();
      return;
    case '/hang':
      return;
    case '/garbage':
      socket.end('SSH-2.0-OpenSSH_9.2\r\n\r\n\x00\x01\x02');
      return;
    case '/early-close':
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok');
      setImmediate(() => socket.destroy());
      return;
    case '/bad-length':
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nokabc');
      return;
    default:
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok');
  }
}
