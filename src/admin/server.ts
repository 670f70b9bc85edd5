// The admin API: its own listener (loopback by default, never a VIP), bearer tokens with roles,
// JSON in and out. Reads show the running state; changes go through PolicyControl.

import { timingSafeEqual } from 'node:crypto';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { type AdminRole, type AdminToken, loadConfigText, roleAllows, tokenDigest } from '../config/index.ts';
import { AdminError, ConfigError, SeglbError } from '../errors.ts';
import { parseEndpoint } from '../net/endpoint.ts';
import { parseAddress } from '../net/index.ts';
import { ipsetSize } from '../net/packed-cidrs.ts';
import type { Logger } from '../observe/log.ts';
import { explainVerdict, type SegmentPolicy } from '../policy/index.ts';
import { packageVersion } from '../version.ts';
import type { PolicyControl } from './control.ts';
import { lintConfig, simulateImpact } from './impact.ts';
import { applyPolicyOps, type PolicyOp, parsePolicyOp } from './ops.ts';

/** Largest request body accepted, bytes. */
export const ADMIN_MAX_BODY_BYTES = 1 << 20;

/** Longest quarantine TTL accepted (10 years); a longer one is written as no expiry. */
export const MAX_QUARANTINE_TTL_MS = 10 * 365 * 24 * 3600 * 1000;

interface Call {
  readonly req: IncomingMessage;
  readonly params: Record<string, string>;
  readonly query: URLSearchParams;
  readonly body: unknown;
  /** `token:NAME` */
  readonly actor: string;
}

interface Route {
  readonly method: string;
  readonly pattern: RegExp;
  readonly names: readonly string[];
  readonly role: AdminRole;
  readonly handler: (call: Call) => Promise<unknown> | unknown;
}

/** Optional extra routes added by other modules (metrics, dashboard) with their role. */
export interface AdminExtension {
  readonly method: string;
  /** Path pattern like `/metrics` or `/events/:id`. */
  readonly path: string;
  readonly role: AdminRole | 'none';
  /** Writes the response itself. */
  handle(req: IncomingMessage, res: ServerResponse): void;
}

/**
 * The admin API server. Start with `listen()`; every route needs a bearer token (`read`, `operate`
 * or `admin` role: 401 without a valid one, 403 with too low a role). See docs/api.md.
 */
export class AdminServer {
  readonly server: Server;
  readonly #control: PolicyControl;
  readonly #log: Logger;
  readonly #routes: Route[] = [];
  readonly #extensions: AdminExtension[] = [];
  readonly #started = Date.now();

  /**
   * @param control - the policy controller (and through it the runtime)
   * @param log - logger (tokens never reach it)
   */
  constructor(control: PolicyControl, log: Logger) {
    this.#control = control;
    this.#log = log.child({ component: 'admin' });
    const tls = control.runtime.snapshot.loaded.adminTls;
    const handler = (req: IncomingMessage, res: ServerResponse) => {
      this.#handle(req, res).catch((err: unknown) => this.#fail(res, err));
    };
    this.server = tls
      ? createHttpsServer(
          {
            cert: tls.cert,
            key: tls.key,
            minVersion: 'TLSv1.2',
            headersTimeout: 10_000,
            requestTimeout: 30_000,
          },
          handler,
        )
      : createHttpServer({ headersTimeout: 10_000, requestTimeout: 30_000 }, handler);
    this.#defineRoutes();
  }

  /**
   * Binds `admin.listen`.
   * @returns the bound address
   * @throws the bind error
   */
  listen(): Promise<AddressInfo> {
    const listen = this.#control.runtime.snapshot.loaded.config.admin?.listen ?? '127.0.0.1:9900';
    const ep = parseEndpoint(listen, true);
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(ep.port, ep.host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** Adds a route served by another module (metrics, dashboard). */
  extend(ext: AdminExtension): void {
    this.#extensions.push(ext);
  }

  /** Stops the listener and closes its connections. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }

  #route(method: string, path: string, role: AdminRole, handler: Route['handler']): void {
    const names: string[] = [];
    const pattern = new RegExp(
      `^${path.replace(/:([a-z_]+)/g, (_m, n: string) => {
        names.push(n);
        return '([^/]+)';
      })}$`,
    );
    this.#routes.push({ method, pattern, names, role, handler });
  }

  #defineRoutes(): void {
    const c = this.#control;
    const rt = c.runtime;
    const segmentOf = (name: string) => {
      const seg = rt.snapshot.segments.get(name);
      if (!seg) throw new AdminError('SEGLB_ADMIN_NOT_FOUND', `segment ${name} does not exist`, 404);
      return seg;
    };
    const op = (body: unknown, extra: Record<string, unknown>): PolicyOp =>
      parsePolicyOp({ ...(asObject(body) ?? {}), ...extra });
    // Whether the change reached the state file (false: it is live but would not survive a restart;
    // /status says why); null when runtime changes are not persisted at all.
    const persisted = () => (c.state ? c.state.lastError === null : null);
    const changed = async (actor: string, ops: PolicyOp[]) => {
      const snap = await c.change(actor, ops);
      return { version: snap.version, hash: snap.hash, persisted: persisted() };
    };

    this.#route('GET', '/status', 'read', () => this.#status());
    this.#route('GET', '/segments', 'read', () =>
      [...rt.snapshot.segments.values()].map((s) =>
        segmentSummary(s.name, s.config.mode, s.policy, s.counters),
      ),
    );
    this.#route('GET', '/segments/:name', 'read', ({ params }) => {
      const s = segmentOf(params.name as string);
      return {
        ...segmentSummary(s.name, s.config.mode, s.policy, s.counters),
        config: s.config,
        revoke: s.config.revoke,
        rules: rulesWithCounters(s.policy),
      };
    });
    this.#route('POST', '/explain', 'read', ({ body }) => {
      const b = asObject(body) ?? {};
      const seg = segmentOf(requireString(b, 'segment'));
      const source = requireString(b, 'source');
      try {
        parseAddress(source);
      } catch {
        // explainVerdict would judge any text as an address no rule covers: say what is wrong instead.
        throw new AdminError('SEGLB_ADMIN_BAD_REQUEST', '"source" must be an IPv4 or IPv6 address', 400);
      }
      const loaded = rt.snapshot.loaded;
      const hasRequest = ['method', 'path', 'host', 'headers'].some((k) => b[k] !== undefined);
      return explainVerdict(
        seg.policy,
        source,
        hasRequest
          ? {
              method: optString(b, 'method'),
              path: optString(b, 'path'),
              host: optString(b, 'host'),
              headers: (asObject(b.headers) ?? {}) as Record<string, string>,
            }
          : undefined,
        (kind, index) => {
          const pos = loaded.positionOf(['segments', seg.name, kind, index]);
          return `${loaded.file}:${pos.line}:${pos.col}`;
        },
        rt.quarantine,
      );
    });
    this.#route('GET', '/ipsets', 'read', () =>
      Object.entries(rt.snapshot.loaded.config.ipsets).map(([name, set]) => ({
        name,
        prefixes: ipsetSize(rt.snapshot.loaded.ipsets, name),
        // Inline entries are what POST/DELETE /ipsets/NAME/entries change; file entries change in the file.
        cidrs: set.cidrs ?? [],
        file: set.file ?? null,
        union: set.union ?? [],
      })),
    );
    this.#route('GET', '/quarantine', 'read', () =>
      rt.quarantine.list().map((e) => ({
        ...e,
        expiresAt: Number.isFinite(e.expiresAt) ? new Date(e.expiresAt).toISOString() : null,
      })),
    );
    this.#route('POST', '/quarantine', 'operate', ({ body, actor }) => {
      const b = asObject(body) ?? {};
      // A misspelt key (`ttl` for `ttl_ms`) must not silently give an entry that never expires.
      const unknown = Object.keys(b).filter((k) => k !== 'cidr' && k !== 'ttl_ms' && k !== 'reason');
      if (unknown.length > 0) {
        throw new AdminError(
          'SEGLB_ADMIN_BAD_REQUEST',
          `unknown key(s) ${unknown.map((k) => `"${k}"`).join(', ')}: the body takes cidr, ttl_ms and reason`,
          400,
        );
      }
      const ttl = b.ttl_ms === undefined ? Number.POSITIVE_INFINITY : b.ttl_ms;
      // Checked before anything is applied: an expiry past what a Date can hold (ttl_ms 1e300)
      // used to be quarantined first and then fail the answer with 400.
      // Infinity is what an omitted ttl_ms means (no expiry), not a number that is too large.
      if (
        typeof ttl !== 'number' ||
        !(ttl > 0) ||
        (ttl > MAX_QUARANTINE_TTL_MS && ttl !== Number.POSITIVE_INFINITY)
      )
        throw new AdminError(
          'SEGLB_ADMIN_BAD_REQUEST',
          `"ttl_ms" must be a positive number of milliseconds, at most ${MAX_QUARANTINE_TTL_MS} (omit it for no expiry)`,
          400,
        );
      const { entry, closed } = c.quarantineAdd(
        actor,
        requireString(b, 'cidr'),
        ttl,
        optString(b, 'reason') ?? `added by ${actor}`,
      );
      return {
        entry: {
          ...entry,
          expiresAt: Number.isFinite(entry.expiresAt) ? new Date(entry.expiresAt).toISOString() : null,
        },
        connectionsClosed: closed,
        persisted: persisted(),
      };
    });
    this.#route('DELETE', '/quarantine/:cidr', 'operate', ({ params, actor }) => {
      const cidr = params.cidr as string;
      if (!c.quarantineRemove(actor, cidr))
        throw new AdminError('SEGLB_ADMIN_NOT_FOUND', `no quarantine entry ${cidr}`, 404);
      return { removed: cidr, persisted: persisted() };
    });
    this.#route('PUT', '/segments/:name/mode', 'operate', ({ params, body, actor }) =>
      changed(actor, [op(body, { op: 'set_mode', segment: params.name })]),
    );
    this.#route('POST', '/segments/:name/rules', 'admin', ({ params, body, actor }) =>
      changed(actor, [op(body, { op: 'add_rule', segment: params.name })]),
    );
    this.#route('DELETE', '/segments/:name/rules/:kind/:rule', 'admin', ({ params, actor }) =>
      changed(actor, [
        parsePolicyOp({ op: 'remove_rule', segment: params.name, kind: params.kind, name: params.rule }),
      ]),
    );
    this.#route('POST', '/ipsets/:name/entries', 'admin', ({ params, body, actor }) =>
      changed(actor, [op(body, { op: 'add_ipset_entries', ipset: params.name })]),
    );
    this.#route('DELETE', '/ipsets/:name/entries', 'admin', ({ params, body, actor }) =>
      changed(actor, [op(body, { op: 'remove_ipset_entries', ipset: params.name })]),
    );
    this.#route('POST', '/changes', 'admin', ({ body, actor }) => changed(actor, opsOf(body)));
    this.#route('PUT', '/pools/:pool/backends/:backend/state', 'operate', ({ params, body, actor }) => {
      const state = requireString(asObject(body) ?? {}, 'state');
      if (state !== 'ready' && state !== 'drain' && state !== 'maintenance') {
        throw new AdminError('SEGLB_ADMIN_BAD_REQUEST', '"state" must be ready, drain or maintenance', 400);
      }
      c.setBackendState(actor, params.pool as string, params.backend as string, state);
      return { pool: params.pool, backend: params.backend, state, persisted: persisted() };
    });
    this.#route('POST', '/reload', 'admin', async ({ actor }) => {
      try {
        const snap = await c.reloadFile(actor);
        return { version: snap.version, hash: snap.hash, drift: c.drift, persisted: persisted() };
      } catch (err) {
        if (err instanceof ConfigError) {
          throw new AdminError(
            'SEGLB_ADMIN_INVALID_CHANGE',
            'the config file is invalid; the running configuration stays',
            422,
            { issues: err.issues, cause: err },
          );
        }
        throw err;
      }
    });
    this.#route('GET', '/diff', 'read', () => ({
      file: c.file,
      runtimeOps: c.ops,
      drift: c.drift,
      persistedTo: c.state?.file ?? null,
      effective: c.effectiveText(),
    }));
    this.#route('GET', '/audit', 'read', ({ query }) => {
      // A negative limit would slice from the front (the oldest entries): refuse it instead.
      const limit = Number(query.get('limit') ?? 100);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
        throw new AdminError('SEGLB_ADMIN_BAD_REQUEST', '"limit" must be a whole number from 1 to 1000', 400);
      return c.audit.recent(limit);
    });
    this.#route('GET', '/lint', 'read', () => lintConfig(rt.snapshot.loaded));
    this.#route('POST', '/simulate', 'read', ({ body }) => {
      const b = asObject(body) ?? {};
      const ops = opsOf(b);
      const windowMs = b.window_ms === undefined ? 15 * 60_000 : Number(b.window_ms);
      if (!(windowMs > 0))
        throw new AdminError('SEGLB_ADMIN_BAD_REQUEST', '"window_ms" must be a positive number', 400);
      let candidate: ReturnType<typeof loadConfigText>;
      try {
        candidate = loadConfigText(applyPolicyOps(c.effectiveText(), ops), c.file);
      } catch (err) {
        if (err instanceof ConfigError)
          throw new AdminError('SEGLB_ADMIN_INVALID_CHANGE', 'the candidate policy is invalid', 422, {
            issues: err.issues,
            cause: err,
          });
        throw err;
      }
      const current = new Map<string, SegmentPolicy>(
        [...rt.snapshot.segments].map(([n, s]) => [n, s.policy]),
      );
      return {
        windowMs,
        impact: simulateImpact(current, candidate, rt.shared.observed, windowMs),
        lint: lintConfig(candidate),
      };
    });
  }

  #status() {
    const rt = this.#control.runtime;
    const snap = rt.snapshot;
    return {
      version: packageVersion(),
      uptimeMs: Date.now() - this.#started,
      policy: {
        version: snap.version,
        hash: snap.hash,
        runtimeOps: this.#control.ops.length,
        drift: this.#control.drift.length,
      },
      state: {
        file: this.#control.state?.file ?? null,
        writeError: this.#control.state?.lastError ?? null,
        auditWriteFailures: this.#control.audit.writeFailures,
      },
      segments: [...snap.segments.values()].map((s) =>
        segmentSummary(s.name, s.config.mode, s.policy, s.counters),
      ),
      vips: rt.boundVips(),
      // One entry per pool (segments sharing a pool share its state): health, ejection, queue, budget.
      pools: [...new Map([...snap.segments.values()].map((s) => [s.pool.name, s.pool])).values()].map((p) =>
        p.status(),
      ),
      quarantine: { entries: rt.quarantine.list().length, denied: rt.shared.counters.quarantineDenied },
      counters: rt.shared.counters,
      // Connection limits at accept (limits.max_connections_total, limits.per_source).
      limits: rt.shared.sourceLimits
        ? {
            open: rt.shared.sourceLimits.open,
            trackedSources: rt.shared.sourceLimits.tracked,
            ...rt.shared.sourceLimits.counters,
          }
        : null,
      cluster: this.#control.clusterStatus?.() ?? null,
    };
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = URL.parse(req.url ?? '/', 'http://admin');
    const method = req.method ?? 'GET';
    for (const ext of this.#extensions) {
      if (ext.method === method && ext.path === url?.pathname) {
        if (ext.role !== 'none') this.#authorize(req, ext.role);
        ext.handle(req, res);
        return;
      }
    }
    // Authenticate before looking at the route (a bad path or percent-encoding included), so an
    // anonymous caller learns nothing: always 401.
    const token = this.#authenticate(req);
    if (url === null)
      throw new AdminError('SEGLB_ADMIN_BAD_REQUEST', 'the request target is not a valid path', 400);
    let matched: { route: Route; params: Record<string, string> } | undefined;
    let pathKnown = false;
    for (const route of this.#routes) {
      const m = route.pattern.exec(url.pathname);
      if (!m) continue;
      pathKnown = true;
      if (route.method !== method) continue;
      const params: Record<string, string> = {};
      route.names.forEach((n, i) => {
        params[n] = decodePathParam(m[i + 1] as string);
      });
      matched = { route, params };
      break;
    }
    if (!matched) {
      throw pathKnown
        ? new AdminError('SEGLB_ADMIN_BAD_REQUEST', `method ${method} not allowed on ${url.pathname}`, 405)
        : new AdminError('SEGLB_ADMIN_NOT_FOUND', `no route ${method} ${url.pathname}`, 404);
    }
    if (!roleAllows(token.role, matched.route.role)) {
      throw new AdminError(
        'SEGLB_ADMIN_FORBIDDEN',
        `this call needs the ${matched.route.role} role; token ${token.name} has ${token.role}`,
        403,
      );
    }
    const body = method === 'GET' || method === 'HEAD' ? undefined : await readJson(req);
    const result = await matched.route.handler({
      req,
      params: matched.params,
      query: url.searchParams,
      body,
      actor: `token:${token.name}`,
    });
    // `actor`, not `token`: the logger redacts every `token` key, which would hide who called.
    this.#log.info({ method, path: url.pathname, actor: `token:${token.name}`, status: 200 }, 'admin call');
    send(res, 200, result);
  }

  /** The token of the request. @throws AdminError 401 */
  #authenticate(req: IncomingMessage): AdminToken {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (m) {
      const digest = tokenDigest(m[1] as string);
      let found: AdminToken | undefined;
      // Compare against every token (no early exit) so timing says nothing about which matched.
      for (const t of this.#control.runtime.snapshot.loaded.adminTokens) {
        if (timingSafeEqual(t.digest, digest)) found = t;
      }
      if (found) return found;
    }
    throw new AdminError('SEGLB_ADMIN_UNAUTHORIZED', 'a valid bearer token is required', 401);
  }

  #authorize(req: IncomingMessage, role: AdminRole): AdminToken {
    const token = this.#authenticate(req);
    if (!roleAllows(token.role, role))
      throw new AdminError('SEGLB_ADMIN_FORBIDDEN', `this call needs the ${role} role`, 403);
    return token;
  }

  #fail(res: ServerResponse, err: unknown): void {
    if (err instanceof AdminError) {
      if (err.httpStatus === 401) res.setHeader('www-authenticate', 'Bearer realm="seglb"');
      if (err.httpStatus === 413) res.setHeader('connection', 'close');
      if (err.httpStatus >= 500 || err.httpStatus === 401 || err.httpStatus === 403)
        this.#log.warn({ code: err.code, status: err.httpStatus }, err.message);
      send(res, err.httpStatus, {
        error: { code: err.code, message: err.message, issues: err.issues.length ? err.issues : undefined },
      });
      return;
    }
    if (err instanceof SeglbError) {
      send(res, 400, { error: { code: err.code, message: err.message } });
      return;
    }
    if (err instanceof RangeError) {
      send(res, 400, { error: { code: 'SEGLB_ADMIN_BAD_REQUEST', message: err.message } });
      return;
    }
    this.#log.error({ err: String((err as Error)?.stack ?? err) }, 'admin call failed');
    send(res, 500, { error: { code: 'INTERNAL', message: 'internal error (logged)' } });
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const text = `${JSON.stringify(body, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

/**
 * Reads a JSON body of at most ADMIN_MAX_BODY_BYTES.
 * A declared Content-Length above the limit is refused before a byte is read; a chunked body that
 * grows past it is read to its end and discarded (bounded by the server's requestTimeout), so the
 * 413 reaches the client instead of a reset. Either way the connection closes after the answer: a
 * keep-alive connection with an unread body behind it would make the client's next request fail.
 */
function readJson(req: IncomingMessage): Promise<unknown> {
  const tooLarge = () =>
    new AdminError('SEGLB_ADMIN_BAD_REQUEST', `body larger than ${ADMIN_MAX_BODY_BYTES} bytes`, 413);
  if (Number(req.headers['content-length'] ?? 0) > ADMIN_MAX_BODY_BYTES) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= ADMIN_MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.once('error', reject);
    req.once('end', () => {
      if (size > ADMIN_MAX_BODY_BYTES) {
        reject(tooLarge());
        return;
      }
      if (size === 0) {
        resolve(undefined);
        return;
      }
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new AdminError('SEGLB_ADMIN_BAD_REQUEST', 'the body is not valid JSON', 400));
      }
    });
  });
}

/** A percent-decoded path parameter. @throws AdminError 400 for a malformed escape (`%zz`, `%E0%A4%A`). */
function decodePathParam(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new AdminError(
      'SEGLB_ADMIN_BAD_REQUEST',
      `path parameter ${JSON.stringify(raw)} is not valid percent-encoding`,
      400,
    );
  }
}

function asObject(v: unknown): Record<string, unknown> | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function requireString(o: Record<string, unknown>, key: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v === '')
    throw new AdminError('SEGLB_ADMIN_BAD_REQUEST', `"${key}" must be a non-empty string`, 400);
  return v;
}

function optString(o: Record<string, unknown>, key: string): string | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string')
    throw new AdminError('SEGLB_ADMIN_BAD_REQUEST', `"${key}" must be a string`, 400);
  return v;
}

function opsOf(body: unknown): PolicyOp[] {
  const ops = asObject(body)?.ops;
  if (!Array.isArray(ops) || ops.length === 0)
    throw new AdminError('SEGLB_ADMIN_BAD_REQUEST', '"ops" must be a non-empty list of operations', 400);
  return ops.map(parsePolicyOp);
}

function segmentSummary(name: string, mode: string, policy: SegmentPolicy, counters: object) {
  const sum = (a: Float64Array) => a.reduce((n, x) => n + x, 0);
  return {
    name,
    mode,
    prefixes: policy.prefixCount,
    rules: policy.rules.length,
    verdicts: {
      allowed: sum(policy.allowed),
      denied: sum(policy.denied) + policy.defaultDenied,
      auditDenied: sum(policy.auditDenied) + policy.defaultAuditDenied,
    },
    counters,
  };
}

function rulesWithCounters(policy: SegmentPolicy) {
  return policy.rules.map((r) => ({
    id: r.id,
    name: r.name,
    kind: r.kind,
    l7: r.l7 !== null,
    allowed: policy.allowed[r.id],
    denied: policy.denied[r.id],
    auditDenied: policy.auditDenied[r.id],
  }));
}
