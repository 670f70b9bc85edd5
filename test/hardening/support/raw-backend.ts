// A raw TCP "HTTP backend" for the hardening tests: it records every byte seglb sends it, per
// connection, and answers each request head (plus a Content-Length or chunked body) with a small
// response, so a test sees exactly what was forwarded, framing included. Loopback only.

import { once } from 'node:events';
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';

/** A running recording backend. */
export interface RawBackend {
  readonly host: string;
  readonly port: number;
  /** `host:port` for configs. */
  readonly address: string;
  readonly server: Server;
  /** The bytes of each connection, in order of arrival (latin1 text). */
  readonly connections: { bytes: string }[];
  /** Every byte received so far, all connections concatenated. */
  all(): string;
  /** Request lines seen (`GET /x HTTP/1.1`), over all connections. */
  requestLines(): string[];
  close(): Promise<void>;
}

/**
 * Starts the backend.
 * @param host - loopback address to bind
 * @param keepAlive - answer with keep-alive (default: `connection: close`, one request per connection)
 */
export async function startRawBackend(host = '127.0.0.1', keepAlive = false): Promise<RawBackend> {
  const connections: { bytes: string }[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const record = { bytes: '' };
    connections.push(record);
    let pending = '';
    socket.on('data', (chunk: Buffer) => {
      const text = chunk.toString('latin1');
      record.bytes += text;
      pending += text;
      // Answer every complete request in `pending`.
      for (;;) {
        const used = completeRequestLength(pending);
        if (used < 0) break;
        pending = pending.slice(used);
        const body = 'ok';
        socket.write(
          `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\nconnection: ${keepAlive ? 'keep-alive' : 'close'}\r\n\r\n${body}`,
        );
        if (!keepAlive) {
          socket.end();
          break;
        }
      }
    });
  });
  server.listen(0, host);
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    host,
    port,
    address: `${host}:${port}`,
    server,
    connections,
    all: () => connections.map((c) => c.bytes).join(''),
    requestLines: () =>
      connections.flatMap((c) => c.bytes.split('\r\n').filter((l) => /^[A-Z]+ \S+ HTTP\/\d\.\d$/.test(l))),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Length of the first complete request in `text` (head plus its Content-Length or chunked body),
 * or -1 when more bytes are needed. Deliberately simple: seglb's output is what is being checked.
 */
function completeRequestLength(text: string): number {
  const headEnd = text.indexOf('\r\n\r\n');
  if (headEnd < 0) return -1;
  const head = text.slice(0, headEnd).toLowerCase();
  const bodyStart = headEnd + 4;
  const cl = /\r\ncontent-length:\s*(\d+)/.exec(head);
  if (cl) {
    const end = bodyStart + Number(cl[1]);
    return text.length >= end ? end : -1;
  }
  if (/\r\ntransfer-encoding:\s*chunked/.test(head)) {
    const last = text.indexOf('\r\n0\r\n\r\n', bodyStart - 2);
    return last < 0 ? -1 : last + 7;
  }
  return bodyStart;
}
