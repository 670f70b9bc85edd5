// Helpers shared by the admin API tests: a keep-alive HTTP client bound to a chosen 127.x source
// that notices when seglb closes its connection, a logger whose JSON lines the test can read, and a
// seglb + admin API started with that logger (the same wiring as `seglb run` and startSeglbAdmin).

import { once } from 'node:events';
import { mkdtempSync, openSync, readFileSync } from 'node:fs';
import { Agent, type IncomingHttpHeaders, request } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { PolicyControl } from '../../src/admin/index.ts';
import { createLogger, type Logger } from '../../src/observe/log.ts';
import { startSeglbAdmin, tempDir } from '../support/seglb.ts';

/** One response on a keep-alive connection. */
export interface KeepAliveResult {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** True when the request went over the connection an earlier request opened. */
  readonly reused: boolean;
  /** Socket error code when the request failed (ECONNRESET, ...). */
  readonly error?: string;
}

/**
 * A client holding one keep-alive connection from `localAddress`. `closedAt` is the
 * performance.now() time at which the current connection was closed (by either side), or null.
 */
export class KeepAliveClient {
  readonly port: number;
  readonly localAddress: string;
  readonly agent = new Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 });
  socket: Socket | null = null;
  closedAt: number | null = null;
  #sockets = 0;

  constructor(port: number, localAddress: string) {
    this.port = port;
    this.localAddress = localAddress;
  }

  /** Connections opened so far. */
  get connections(): number {
    return this.#sockets;
  }

  /** Resolves when the current connection is closed, or rejects after `timeoutMs`. */
  async waitClosed(timeoutMs = 2000): Promise<number> {
    const s = this.socket;
    if (s === null) throw new Error('no connection yet');
    if (this.closedAt !== null) return this.closedAt;
    const timer = setTimeout(() => s.emit('seglb-test-timeout'), timeoutMs);
    const [what] = await Promise.race([
      once(s, 'close').then(() => ['close']),
      once(s, 'seglb-test-timeout').then(() => ['timeout']),
    ]);
    clearTimeout(timer);
    if (what === 'timeout')
      throw new Error(`connection from ${this.localAddress} still open after ${timeoutMs} ms`);
    return this.closedAt as unknown as number;
  }

  /** Sends GET `path` (or another method) on the kept connection (a new one if it was closed). */
  request(path = '/', method = 'GET'): Promise<KeepAliveResult> {
    return new Promise((resolve) => {
      let reused = false;
      const req = request(
        {
          host: '127.0.0.1',
          port: this.port,
          path,
          method,
          localAddress: this.localAddress,
          agent: this.agent,
          timeout: 5000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks).toString(),
              reused,
            }),
          );
          res.on('error', (e: NodeJS.ErrnoException) =>
            resolve({ status: 0, headers: {}, body: '', reused, error: e.code ?? e.message }),
          );
        },
      );
      req.on('socket', (s: Socket) => {
        if (s === this.socket) {
          reused = true;
          return;
        }
        this.socket = s;
        this.closedAt = null;
        this.#sockets++;
        s.once('close', () => {
          this.closedAt = performance.now();
        });
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
      req.on('error', (e: NodeJS.ErrnoException) =>
        resolve({ status: 0, headers: {}, body: '', reused, error: e.code ?? e.message }),
      );
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/**
 * seglb's own logger (createLogger, JSON, level trace) writing to a temp file, so a test reads
 * exactly what seglb would write to stdout, redaction included.
 */
export function captureLogger(): {
  log: Logger;
  file: string;
  text: () => string;
  lines: () => Record<string, unknown>[];
} {
  const file = join(mkdtempSync(join(tmpdir(), 'seglb-log-')), 'seglb.log');
  const fd = openSync(file, 'a');
  const log = createLogger({ level: 'trace', format: 'json' }, fd);
  const text = () => readFileSync(file, 'utf8');
  return {
    log,
    file,
    text,
    lines: () =>
      text()
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** Waits until `check()` is true (polled every 10 ms), or throws after `timeoutMs`. */
export async function waitFor(check: () => boolean, timeoutMs = 2000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Policy version of a running control (what every change must bump, and a rejected one must not). */
export function policyVersion(control: PolicyControl): number {
  return control.runtime.snapshot.version;
}

/** Tokens the admin tests use, by role (the token file names them read1, operate1, admin1). */
export const TEST_TOKENS = {
  read: 'r'.repeat(20) + '-read-token',
  operate: 'o'.repeat(20) + '-operate-token',
  admin: 'a'.repeat(20) + '-admin-token',
} as const;

/**
 * startSeglbAdmin with a logger of the caller's choice (startSeglbAdmin's is silent): the same
 * files (tokens.txt with TEST_TOKENS, seglb.yaml, default state and audit files) and wiring.
 */
export function startSeglbAdminLogged(yaml: string, log: Logger, dir = tempDir()) {
  return startSeglbAdmin(yaml, dir, undefined, log);
}
