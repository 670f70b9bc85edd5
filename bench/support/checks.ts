// Answer checks run before a target is benchmarked, one per kind of load, so that a wrong config
// (a proxy answering 403, a truncated 64 KiB body, a POST refused) is not measured as a fast proxy.

import { Agent, request } from 'node:http';
import { LARGE_PATH, LARGE_RESPONSE_BYTES, POST_BODY_BYTES } from './payloads.ts';

/** What a check sends: GET / (200 "ok"), GET /64k (65536 bytes), or POST / with a 16 KiB body. */
export type CheckKind = 'get' | '64k' | 'post';

interface Answer {
  readonly status: number;
  readonly body: Buffer;
  readonly reusedSocket: boolean;
}

function send(
  port: number,
  method: 'GET' | 'POST',
  path: string,
  body: Buffer | null,
  agent: Agent | false,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (body) {
      headers['content-type'] = 'application/octet-stream';
      headers['content-length'] = String(body.length);
    }
    const req = request({ host: '127.0.0.1', port, method, path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), reusedSocket: req.reusedSocket }),
      );
      res.on('error', reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body ?? undefined);
  });
}

/**
 * Checks one target's answer for a kind of load. 'get': GET / answers 200 "ok". '64k': GET /64k
 * answers 200 with exactly 65536 body bytes. 'post': two POSTs of 16 KiB on one keep-alive
 * connection both answer 200 "ok" (the body was accepted and discarded).
 * @returns warnings that do not invalidate the target (e.g. the POST connection was not reused)
 * @throws with `name` and `tail` (the server's output) when the answer is wrong
 */
export async function checkAnswer(name: string, port: number, kind: CheckKind, tail = ''): Promise<string[]> {
  const fail = (what: string) => new Error(`${name}: ${what}${tail ? `\n${tail}` : ''}`);
  const warnings: string[] = [];
  try {
    if (kind === 'get') {
      const a = await send(port, 'GET', '/', null, false);
      if (a.status !== 200 || a.body.toString() !== 'ok')
        throw fail(
          `GET / expected 200 "ok", got ${a.status} ${JSON.stringify(a.body.toString().slice(0, 200))}`,
        );
    } else if (kind === '64k') {
      const a = await send(port, 'GET', LARGE_PATH, null, false);
      if (a.status !== 200 || a.body.length !== LARGE_RESPONSE_BYTES)
        throw fail(
          `GET ${LARGE_PATH} expected 200 with ${LARGE_RESPONSE_BYTES} bytes, got ${a.status} with ${a.body.length}`,
        );
    } else {
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      try {
        const body = Buffer.alloc(POST_BODY_BYTES, 'x');
        for (let i = 0; i < 2; i++) {
          const a = await send(port, 'POST', '/', body, agent);
          if (a.status !== 200 || a.body.toString() !== 'ok')
            throw fail(
              `POST / (${POST_BODY_BYTES} bytes) expected 200 "ok", got ${a.status} ${JSON.stringify(a.body.toString().slice(0, 200))}`,
            );
          if (i === 1 && !a.reusedSocket)
            warnings.push(`${name}: the connection was not kept open after a POST`);
        }
      } finally {
        agent.destroy();
      }
    }
  } catch (err) {
    if ((err as Error).message.startsWith(`${name}:`)) throw err;
    throw fail((err as Error).message);
  }
  return warnings;
}
