// One active health check against one backend: a TCP connect (plus the TLS handshake when the pool
// uses TLS) or an HTTP/1.1 request whose status and, optionally, body are judged. Every probe runs
// the outbound check on the resolved address first, ends within its timeout and can be cancelled.

import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { HealthCheckConfig } from '../../config/types.ts';
import type { SourceSet } from '../../policy/index.ts';
import type { BackendTlsOptions } from '../backend-tls.ts';
import { resolveAllowedAddress } from '../outbound.ts';
import { type StatusRanges, statusMatches } from './status-ranges.ts';

/** Most response body bytes read for `body_contains`. */
export const MAX_CHECK_BODY_BYTES = 64 * 1024;

/** A check's outcome. */
export interface ProbeOutcome {
  readonly ok: boolean;
  /** `connected`, `HTTP 200`, `ECONNREFUSED`, `timeout after 1000 ms`, `HTTP 500 (expected 200-399)` ... */
  readonly detail: string;
}

/** Where and how to probe. */
export interface ProbeSpec {
  readonly host: string;
  readonly port: number;
  readonly config: HealthCheckConfig;
  readonly ranges: StatusRanges;
  readonly tls: BackendTlsOptions | null;
  /** Allowed destinations (the backend_subnets of the segments using the pool). */
  readonly subnets: SourceSet;
}

/**
 * Runs one probe.
 * @param done - called exactly once, unless cancelled first
 * @returns a function that cancels the probe (no callback after it)
 */
export function runProbe(spec: ProbeSpec, done: (outcome: ProbeOutcome) => void): () => void {
  let finished = false;
  let socket: Socket | null = null;
  let abort: (() => void) | null = null;
  const finish = (outcome: ProbeOutcome) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket?.destroy();
    abort?.();
    done(outcome);
  };
  const timeoutMs = spec.config.timeout_ms;
  const timer = setTimeout(() => finish({ ok: false, detail: `timeout after ${timeoutMs} ms` }), timeoutMs);
  timer.unref();
  resolveAllowedAddress(
    spec.host,
    spec.subnets,
    () => {},
    (err, address) => {
      if (finished) return;
      if (err) {
        finish({ ok: false, detail: (err as NodeJS.ErrnoException).code ?? err.message });
        return;
      }
      if (spec.config.type === 'tcp') {
        socket = connectTcp(spec, address, finish);
      } else {
        abort = requestHttp(spec, address, finish);
      }
    },
  );
  return () => {
    finished = true;
    clearTimeout(timer);
    socket?.destroy();
    abort?.();
  };
}

function connectTcp(spec: ProbeSpec, address: string, finish: (o: ProbeOutcome) => void): Socket {
  const tls = spec.tls;
  const s = tls
    ? tlsConnect({
        host: address,
        port: spec.port,
        servername: tls.servername,
        ca: tls.ca,
        rejectUnauthorized: tls.rejectUnauthorized,
      })
    : netConnect({ host: address, port: spec.port });
  s.once(tls ? 'secureConnect' : 'connect', () =>
    finish({ ok: true, detail: tls ? 'TLS handshake done' : 'connected' }),
  );
  s.once('error', (e: NodeJS.ErrnoException) => finish({ ok: false, detail: e.code ?? e.message }));
  return s;
}

function requestHttp(spec: ProbeSpec, address: string, finish: (o: ProbeOutcome) => void): () => void {
  const http = spec.config.http;
  const tls = spec.tls;
  const hostHeader =
    http.host ?? (spec.host.includes(':') ? `[${spec.host}]:${spec.port}` : `${spec.host}:${spec.port}`);
  const options = {
    host: address,
    port: spec.port,
    method: http.method,
    path: http.path,
    agent: false as const,
    setHost: false,
    headers: { host: hostHeader, 'user-agent': 'seglb-health-check', connection: 'close', accept: '*/*' },
  };
  const req = tls
    ? httpsRequest({
        ...options,
        servername: tls.servername,
        ca: tls.ca,
        rejectUnauthorized: tls.rejectUnauthorized,
      })
    : httpRequest(options);
  req.on('response', (res) => {
    const status = res.statusCode ?? 0;
    if (!statusMatches(spec.ranges, status)) {
      res.destroy();
      finish({ ok: false, detail: `HTTP ${status} (expected ${http.expect_status.join(', ')})` });
      return;
    }
    const want = http.body_contains;
    if (want === undefined) {
      res.destroy();
      finish({ ok: true, detail: `HTTP ${status}` });
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const judge = () => {
      const ok = Buffer.concat(chunks).toString('utf8').includes(want);
      finish(
        ok
          ? { ok: true, detail: `HTTP ${status}` }
          : { ok: false, detail: `HTTP ${status}, body lacks the expected text` },
      );
    };
    res.on('data', (c: Buffer) => {
      if (size >= MAX_CHECK_BODY_BYTES) return;
      chunks.push(c.subarray(0, MAX_CHECK_BODY_BYTES - size));
      size += c.length;
      if (size >= MAX_CHECK_BODY_BYTES) {
        res.destroy();
        judge();
      }
    });
    res.on('end', judge);
    res.on('error', () => judge());
  });
  req.on('error', (e: NodeJS.ErrnoException) => finish({ ok: false, detail: e.code ?? e.message }));
  req.end();
  return () => req.destroy();
}
