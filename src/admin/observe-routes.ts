// The visibility routes of the admin listener: /metrics (Prometheus), /flows, /aggregates,
// /events (+ the live SSE stream, opened with a short-lived signed ticket since EventSource cannot
// send an Authorization header), /observe/overview and the dashboard's static files. Also points
// the detectors' quarantine action at PolicyControl, so it is persisted and audited.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { type AdminRole, type AdminToken, roleAllows, tokenDigest } from '../config/index.ts';
import { buildMetricsRegistry, FLOW_VERDICT_NAMES, type FlowVerdictName } from '../observe/index.ts';
import { packageVersion } from '../version.ts';
import type { PolicyControl } from './control.ts';
import type { AdminServer } from './server.ts';

/** Lifetime of a stream ticket: long enough to open the stream, too short to be worth stealing. */
export const STREAM_TICKET_MS = 30_000;
/** A stream client whose unsent output passes this is too slow and is dropped. */
const STREAM_MAX_BUFFER = 1 << 20;
const HEARTBEAT_MS = 15_000;

const DASHBOARD_DIR = join(import.meta.dirname, 'dashboard');
const DASHBOARD_FILES: Readonly<Record<string, { file: string; type: string }>> = {
  '/dashboard': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
};
/** The page loads only its own files and talks only to this listener. */
const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/**
 * Wires the observer to the controller and, when there is an admin listener, adds the visibility
 * routes to it.
 * @param control - the policy controller (its runtime owns the observer)
 * @param admin - the admin server, or null when `admin:` is not configured
 */
export function wireObserve(control: PolicyControl, admin: AdminServer | null): void {
  const rt = control.runtime;
  const observer = rt.observer;
  observer.quarantineHandler = (actor, cidr, ttlMs, reason) => {
    control.quarantineAdd(actor, cidr, ttlMs, reason);
  };
  if (admin === null) return;
  const registry = buildMetricsRegistry(observer, packageVersion());
  const tickets = new StreamTickets();
  const tokens = () => rt.snapshot.loaded.adminTokens;

  /** Authenticates and authorizes; answers 401/403 itself and returns null on failure. */
  const guard = (req: IncomingMessage, res: ServerResponse, role: AdminRole): AdminToken | null => {
    const token = bearerToken(req, tokens());
    if (token === null) {
      res.setHeader('www-authenticate', 'Bearer realm="seglb"');
      sendError(res, 401, 'SEGLB_ADMIN_UNAUTHORIZED', 'a valid bearer token is required');
      return null;
    }
    if (!roleAllows(token.role, role)) {
      sendError(res, 403, 'SEGLB_ADMIN_FORBIDDEN', `this call needs the ${role} role`);
      return null;
    }
    return token;
  };
  const route = (
    method: string,
    path: string,
    handle: (req: IncomingMessage, res: ServerResponse) => unknown,
  ) => {
    admin.extend({
      method,
      path,
      role: 'none',
      handle(req, res) {
        // The admin server calls handle() without awaiting it: every failure is answered here.
        Promise.resolve()
          .then(() => handle(req, res))
          .catch((err: unknown) => {
            if (err instanceof BadRequest) sendError(res, 400, 'SEGLB_ADMIN_BAD_REQUEST', err.message);
            else sendError(res, 500, 'INTERNAL', `internal error: ${String((err as Error)?.message ?? err)}`);
          });
      },
    });
  };

  route('GET', '/metrics', async (req, res) => {
    if (observer.config.metrics_auth === 'token' && guard(req, res, 'read') === null) return;
    const text = await registry.metrics();
    res.writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' });
    res.end(text);
  });

  route('GET', '/flows', (req, res) => {
    if (guard(req, res, 'read') === null) return;
    const q = queryOf(req);
    const verdict = q.get('verdict') ?? undefined;
    if (verdict !== undefined && !FLOW_VERDICT_NAMES.includes(verdict as FlowVerdictName))
      throw new BadRequest('"verdict" must be allow, deny or audit');
    const flows = observer.ring.query({
      limit: intParam(q, 'limit', 100, 1, 10_000),
      segment: q.get('segment') ?? undefined,
      verdict: verdict as FlowVerdictName | undefined,
      source: q.get('source') ?? undefined,
      afterSeq: intParam(q, 'after', 0, 0, Number.MAX_SAFE_INTEGER),
    });
    sendJson(res, 200, {
      enabled: observer.config.flows.enabled,
      capacity: observer.ring.capacity,
      written: observer.ring.written,
      flows,
    });
  });

  route('GET', '/aggregates', (req, res) => {
    if (guard(req, res, 'read') === null) return;
    const q = queryOf(req);
    const limit = intParam(q, 'limit', 100, 1, 100_000);
    const segments = observer.aggregates(q.get('segment') ?? undefined).map((a) => ({
      segment: a.segment,
      groups: a.groups.slice(0, limit).map((g) => ({
        ...g,
        firstSeen: new Date(g.firstSeen).toISOString(),
        lastSeen: new Date(g.lastSeen).toISOString(),
      })),
    }));
    sendJson(res, 200, { segments });
  });

  route('GET', '/events', (req, res) => {
    if (guard(req, res, 'read') === null) return;
    const q = queryOf(req);
    sendJson(res, 200, {
      events: observer.events.recent(
        intParam(q, 'limit', 100, 1, 100_000),
        intParam(q, 'after', 0, 0, Number.MAX_SAFE_INTEGER),
      ),
    });
  });

  route('POST', '/events/ticket', (req, res) => {
    const token = guard(req, res, 'read');
    if (token === null) return;
    req.resume();
    sendJson(res, 200, {
      ticket: tickets.issue(token, Date.now()),
      expiresInMs: STREAM_TICKET_MS,
      token: { name: token.name, role: token.role },
    });
  });

  route('GET', '/events/stream', (req, res) => {
    const q = queryOf(req);
    const ticket = q.get('ticket');
    let token: AdminToken | null;
    if (ticket !== null) {
      token = tickets.verify(ticket, tokens(), Date.now());
      if (token === null) {
        sendError(res, 401, 'SEGLB_ADMIN_UNAUTHORIZED', 'the stream ticket is invalid or expired');
        return;
      }
    } else {
      token = guard(req, res, 'read');
      if (token === null) return;
    }
    const events = observer.events;
    if (events.subscribers >= observer.config.events.max_stream_clients) {
      res.setHeader('retry-after', '5');
      sendError(
        res,
        503,
        'SEGLB_ADMIN_CONFLICT',
        'too many live stream clients (observe.events.max_stream_clients)',
      );
      return;
    }
    openStream(req, res, observer, token);
  });

  route('GET', '/observe/overview', (req, res) => {
    if (guard(req, res, 'read') === null) return;
    sendJson(res, 200, overview(control));
  });

  for (const [path, asset] of Object.entries(DASHBOARD_FILES)) {
    route('GET', path, (_req, res) => {
      // Read per request: small files, rarely fetched, and an edit shows up without a restart.
      const body = readFileSync(join(DASHBOARD_DIR, asset.file));
      res.writeHead(200, {
        'content-type': asset.type,
        'content-length': body.length,
        'cache-control': 'no-cache',
        'content-security-policy': DASHBOARD_CSP,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      });
      res.end(body);
    });
  }
}

/** The SSE stream: alerts, deny/audit flows (rate-limited per client), stats each interval. */
function openStream(
  req: IncomingMessage,
  res: ServerResponse,
  observer: PolicyControl['runtime']['observer'],
  token: AdminToken,
): void {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-store',
    'x-accel-buffering': 'no',
  });
  res.socket?.setNoDelay(true);
  const write = (event: string, data: string, id = 0) => {
    res.write(
      id > 0 ? `event: ${event}\nid: ${id}\ndata: ${data}\n\n` : `event: ${event}\ndata: ${data}\n\n`,
    );
    if (res.writableLength > STREAM_MAX_BUFFER) res.destroy();
  };
  res.write('retry: 2000\n\n');
  write('hello', JSON.stringify({ token: { name: token.name, role: token.role } }));
  write('stats', JSON.stringify(observer.stats()));
  const perSecond = observer.config.events.stream_flows_per_second;
  let windowStart = Date.now();
  let sent = 0;
  let skipped = 0;
  const unsubscribe = observer.events.subscribe((event, json, id) => {
    if (event === 'flow') {
      const now = Date.now();
      if (now - windowStart >= 1000) {
        windowStart = now;
        sent = 0;
      }
      if (sent >= perSecond) {
        skipped++;
        return;
      }
      sent++;
    } else if (event === 'stats' && skipped > 0) {
      write('skipped', JSON.stringify({ flows: skipped }));
      skipped = 0;
    }
    write(event, json, id);
  });
  const heartbeat = setInterval(() => res.write(': ping\n\n'), HEARTBEAT_MS);
  heartbeat.unref();
  const end = () => {
    clearInterval(heartbeat);
    unsubscribe();
  };
  res.once('close', end);
  req.once('close', end);
}

/** What the dashboard shows: segments with live rates, pools, quarantine, cluster, detectors. */
function overview(control: PolicyControl) {
  const rt = control.runtime;
  const observer = rt.observer;
  const snap = rt.snapshot;
  const stats = observer.stats();
  const rates = new Map(stats.segments.map((s) => [s.name, s]));
  const pools = new Map<string, unknown>();
  for (const s of snap.segments.values()) {
    const pool = s.pool;
    if (pools.has(pool.name)) continue;
    let status: PoolStatusView | null = null;
    const fn = (pool as unknown as { status?: () => unknown }).status;
    if (typeof fn === 'function') {
      try {
        status = fn.call(pool) as PoolStatusView | null;
      } catch {
        status = null;
      }
    }
    pools.set(pool.name, {
      name: pool.name,
      algorithm: pool.config.algorithm,
      status,
      backends: pool.backends.map((b) => {
        const extra = status?.backends?.find((x) => x.name === b.name);
        return {
          name: b.name,
          address: b.address,
          state: b.adminState,
          usable: b.usable,
          inflight: b.inflight,
          served: b.served,
          failures: b.failures,
          healthy: typeof extra?.healthy === 'boolean' ? extra.healthy : null,
          ejected:
            typeof extra?.ejected === 'boolean'
              ? extra.ejected
              : extra?.ejectedUntil !== undefined
                ? extra.ejectedUntil !== null
                : null,
        };
      }),
    });
  }
  return {
    time: stats.time,
    intervalMs: stats.intervalMs,
    version: packageVersion(),
    policy: { version: snap.version, hash: snap.hash },
    segments: [...snap.segments.values()].map((s) => {
      const live = rates.get(s.name);
      return {
        name: s.name,
        mode: s.config.mode,
        pool: s.pool.name,
        vips: s.config.vips.map((v) => `${v.protocol}://${v.listen}`),
        rates: live?.rates ?? { allow: 0, deny: 0, audit: 0 },
        totals: live?.totals ?? { allow: 0, deny: 0, audit: 0 },
      };
    }),
    pools: [...pools.values()],
    quarantine: rt.quarantine.list().map((e) => ({
      cidr: e.cidr,
      reason: e.reason,
      addedAt: new Date(e.addedAt).toISOString(),
      expiresAt: Number.isFinite(e.expiresAt) ? new Date(e.expiresAt).toISOString() : null,
    })),
    cluster: observer.clusterPeers?.() ?? null,
    flows: {
      enabled: observer.config.flows.enabled,
      capacity: observer.ring.capacity,
      written: observer.ring.written,
    },
    detectors: observer.config.detectors,
  };
}

/** The part of a pool's optional status() the overview reads (the pools work may add more). */
interface PoolStatusView {
  readonly backends?: readonly {
    readonly name?: string;
    readonly healthy?: boolean;
    readonly ejected?: boolean;
    readonly ejectedUntil?: number | null;
  }[];
}

/**
 * Short-lived stream tickets: `base64url(expiry.tokenName).base64url(HMAC-SHA256)` under a key
 * made at start-up. A ticket names the token it was issued to; it stops working when that token is
 * removed or loses the read role.
 */
class StreamTickets {
  readonly #key = randomBytes(32);

  issue(token: AdminToken, now: number): string {
    const payload = Buffer.from(`${now + STREAM_TICKET_MS}.${token.name}`).toString('base64url');
    return `${payload}.${this.#mac(payload)}`;
  }

  verify(ticket: string, tokens: readonly AdminToken[], now: number): AdminToken | null {
    const dot = ticket.indexOf('.');
    if (dot <= 0) return null;
    const payload = ticket.slice(0, dot);
    const mac = Buffer.from(ticket.slice(dot + 1));
    const want = Buffer.from(this.#mac(payload));
    if (mac.length !== want.length || !timingSafeEqual(mac, want)) return null;
    const text = Buffer.from(payload, 'base64url').toString();
    const sep = text.indexOf('.');
    const expiry = Number(text.slice(0, sep));
    const name = text.slice(sep + 1);
    if (!(expiry > now)) return null;
    const token = tokens.find((t) => t.name === name);
    return token && roleAllows(token.role, 'read') ? token : null;
  }

  #mac(payload: string): string {
    return createHmac('sha256', this.#key).update(payload).digest('base64url');
  }
}

/** The token of a request's `Authorization: Bearer`, compared against every token (constant time). */
function bearerToken(req: IncomingMessage, tokens: readonly AdminToken[]): AdminToken | null {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  if (!m) return null;
  const digest = tokenDigest(m[1] as string);
  let found: AdminToken | null = null;
  for (const t of tokens) if (timingSafeEqual(t.digest, digest)) found = t;
  return found;
}

class BadRequest extends Error {}

function queryOf(req: IncomingMessage): URLSearchParams {
  return new URL(req.url ?? '/', 'http://admin').searchParams;
}

function intParam(q: URLSearchParams, name: string, def: number, min: number, max: number): number {
  const raw = q.get(name);
  if (raw === null || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new BadRequest(`"${name}" must be an integer from ${min} to ${max}`);
  return n;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { error: { code, message } });
}
