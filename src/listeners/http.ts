// HTTP and HTTPS VIPs: node's HTTP/1.1 server parses client requests (with the verdict hook in
// front of it), requests are forwarded through undici Pool.dispatch with a raw streaming handler,
// and WebSocket/upgrade requests through http-proxy-3.

import { randomUUID } from 'node:crypto';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import { createServer as createHttpsServer, Agent as HttpsAgent } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { createProxyServer, type ProxyServer } from 'http-proxy-3';
import type { Dispatcher } from 'undici';
import type { TlsMaterial } from '../config/index.ts';
import { PoolError } from '../errors.ts';
import { parseEndpoint } from '../net/endpoint.ts';
import {
  FLOW_ALLOW,
  FLOW_AUDIT,
  FLOW_DENY,
  type FlowVerdict,
  RULE_QUARANTINE,
  RULE_TRUSTED_PROXY,
} from '../observe/index.ts';
import {
  normaliseRequestPath,
  requestHostName,
  VERDICT_DENY,
  VERDICT_L7,
  type VerdictRecord,
} from '../policy/index.ts';
import type { AssignHandler, Backend, PickRequest, QueueTicket } from '../pools/index.ts';
import { BACKEND_FULL, resolveAllowedAddress } from '../pools/index.ts';
import {
  type AcceptShared,
  type ConnectionState,
  decideConnection,
  installVerdictHook,
  logDeny,
  type SeglbSocket,
} from './accept.ts';
import { installStallGuard } from './client-stall.ts';
import type { SegmentRuntime, VipContext } from './context.ts';
import {
  buildDownstreamHeaders,
  buildUpstreamHeaders,
  clientFromForwardedFor,
  sanitiseUpgradeHeaders,
} from './http-headers.ts';
import { checkRequestHead } from './request-checks.ts';

type Req = IncomingMessage & { socket: SeglbSocket };

/** Methods a request may be retried with after a failure past connect (RFC 9110 §9.2.2). */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Error codes meaning "the request never reached the backend": always safe to retry elsewhere. */
const CONNECT_ERRORS: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'UND_ERR_CONNECT_TIMEOUT',
  'SEGLB_POOL_OUTBOUND_DENIED',
]);

/**
 * An HTTP or HTTPS VIP. Construct, `listen()`, swap contexts with `setContext()` on reload, and
 * `close(graceMs)` to drain.
 */
export class HttpVip {
  readonly server: Server;
  /** Open client sockets (raw TCP sockets, TLS included). */
  readonly active = new Set<Socket>();
  #ctx: VipContext;
  readonly #shared: AcceptShared;
  readonly #proto: 'http' | 'https';
  #draining = false;
  #wsProxy: ProxyServer | null = null;
  /** SNI certificate lookup of an HTTPS VIP (swapped when certificates change on reload). */
  #sni: { lookup(name: string): SecureContext } | null = null;
  /** Client, verdict and rule of the request being handled, for its flow record (set, then read at once). */
  #flowSource = '';
  #flowVerdict: FlowVerdict = FLOW_ALLOW;
  #flowRule = 0;

  /**
   * @param ctx - the VIP's context in the current snapshot
   * @param shared - quarantine, logger, counters
   * @param tls - certificates for an HTTPS VIP (first is the default), undefined for HTTP
   */
  constructor(ctx: VipContext, shared: AcceptShared, tls?: readonly TlsMaterial[]) {
    this.#ctx = ctx;
    this.#shared = shared;
    this.#proto = tls ? 'https' : 'http';
    const t = ctx.timeouts;
    const httpOptions = {
      maxHeaderSize: ctx.limits.max_header_bytes,
      headersTimeout: t.client_header_ms,
      requestTimeout: t.client_request_ms,
      keepAliveTimeout: t.client_idle_ms,
      connectionsCheckingInterval: Math.min(1000, t.client_header_ms),
      requireHostHeader: true,
      joinDuplicateHeaders: false,
      noDelay: true,
      // Only WebSocket upgrades become tunnels; any other Upgrade (h2c above all: a tunnel to the
      // backend's HTTP/2 that no L7 rule would see) is served as a plain request, Upgrade dropped.
      shouldUpgradeCallback: isWebSocketUpgrade,
    };
    const onRequest = (req: IncomingMessage, res: ServerResponse) => this.#onRequest(req as Req, res);
    if (tls) {
      this.#sni = buildSniContexts(tls);
      const first = tls[0] as TlsMaterial;
      this.server = createHttpsServer(
        {
          ...httpOptions,
          cert: first.cert,
          key: first.key,
          minVersion: ctx.vip.tls?.min_version ?? 'TLSv1.2',
          SNICallback: (name, cb) => cb(null, this.#sni?.lookup(name)),
          handshakeTimeout: t.client_header_ms,
        },
        onRequest,
      );
      // Requests arrive on the TLSSocket; the connection state was put on the raw socket.
      this.server.prependListener(
        'secureConnection',
        (s: Socket & { _parent?: SeglbSocket; seglb?: ConnectionState }) => {
          s.seglb = s._parent?.seglb;
        },
      );
      this.server.on('tlsClientError', () => {});
    } else {
      this.server = createHttpServer(httpOptions, onRequest);
    }
    const protocolListener = this.server.listeners('connection')[0] as (s: Socket) => void;
    const server = this.server;
    const resume = !tls;
    installVerdictHook(
      this.server,
      () => this.#ctx,
      shared,
      (socket) => {
        protocolListener.call(server, socket);
        if (resume) socket.resume();
      },
      this.active,
    );
    this.server.on('upgrade', (req: Req, socket: Socket, head: Buffer) => this.#onUpgrade(req, socket, head));
    installStallGuard(this.server, t.client_stall_ms, () => {
      shared.counters.clientStalled = (shared.counters.clientStalled ?? 0) + 1;
    });
  }

  /**
   * Swaps in the VIP's context of a new snapshot; open connections take it at their next request.
   * On an HTTPS VIP new certificates apply to the next handshake (no re-bind, nothing dropped).
   */
  setContext(ctx: VipContext): void {
    if (ctx.tls !== null && this.#sni !== null && ctx.tls !== this.#ctx.tls) {
      this.#sni = buildSniContexts(ctx.tls);
      const first = ctx.tls[0] as TlsMaterial;
      (this.server as import('node:https').Server).setSecureContext({
        cert: first.cert,
        key: first.key,
        minVersion: ctx.vip.tls?.min_version ?? 'TLSv1.2',
      });
    }
    this.#ctx = ctx;
  }

  /**
   * Binds the VIP.
   * @returns the bound address (port resolved when the config said 0)
   * @throws the bind error (EADDRINUSE, EACCES, ...)
   */
  listen(): Promise<AddressInfo> {
    const ep = parseEndpoint(this.#ctx.vip.listen, true);
    return listenOn(this.server, ep.host, ep.port, this.#ctx.vip.ipv6_only, this.#ctx.vip.reuse_port);
  }

  /**
   * Stops accepting, lets in-flight requests finish (connections close after their current
   * response), then closes what is left after `graceMs`.
   */
  async close(graceMs: number): Promise<void> {
    this.#draining = true;
    await closeGracefully(this.server, this.active, graceMs, () => this.server.closeIdleConnections());
    this.#wsProxy?.close();
  }

  #onRequest(req: Req, res: ServerResponse): void {
    // A pipelined request waits for the response before it (node parses ahead and queues its
    // response without a socket): one client connection never holds more than one backend request,
    // so pipelining cannot multiply what a (slow-reading) client ties up, as in HAProxy.
    if (res.socket === null) {
      res.once('socket', () => this.#onRequest(req, res));
      return;
    }
    const t0 = performance.now();
    let conn = req.socket.seglb;
    if (conn === undefined) {
      res.destroy();
      return;
    }
    if (conn.ctx !== this.#ctx) {
      // The snapshot changed since this keep-alive connection was accepted: judge it again under
      // the new policy, and serve it from the new pool (the old pool may be closing).
      const next = this.#rejudge(req.socket, conn);
      if (next === null) {
        res.shouldKeepAlive = false;
        sendError(res, conn.ctx.segment, 403, 'source no longer allowed by segment policy');
        return;
      }
      conn = next;
    }
    const seg = conn.ctx.segment;
    seg.counters.requests++;
    if (this.#draining) res.shouldKeepAlive = false;
    this.#flowFromConnection(conn);
    const refusal = checkRequestHead(req);
    if (refusal !== null) {
      this.#shared.counters.requestsRefused = (this.#shared.counters.requestsRefused ?? 0) + 1;
      res.shouldKeepAlive = false;
      sendError(res, seg, refusal[0], refusal[1]);
      this.#requestFlow(conn.ctx, refusal[0], t0);
      return;
    }
    const source = this.#judge(req, conn, seg);
    if (source === null) {
      sendError(res, seg, 403, 'request not allowed by segment policy');
      this.#requestFlow(conn.ctx, 403, t0);
      return;
    }
    let path = req.url ?? '/';
    if (path === '*') {
      // The asterisk-form (RFC 9112 §3.2.4, OPTIONS *) asks about seglb itself, not a resource:
      // answered here (the backend connection pool cannot carry it), never blamed on a backend.
      sendError(res, seg, 501, 'OPTIONS * is not forwarded to backends');
      this.#requestFlow(conn.ctx, 501, t0);
      return;
    }
    if (path.charCodeAt(0) !== 47 /* / */) {
      const origin = originForm(path);
      if (origin === null) {
        sendError(res, seg, 400, 'invalid request target');
        this.#requestFlow(conn.ctx, 400, t0);
        return;
      }
      path = origin;
    }
    const headers = buildUpstreamHeaders(req.rawHeaders, {
      client: source,
      peer: conn.source,
      trusted: conn.viaTrustedProxy,
      proto: this.#proto,
      xff: seg.forwarded.x_forwarded_for,
      xfProto: seg.forwarded.x_forwarded_proto,
      xfHost: seg.forwarded.x_forwarded_host,
    });
    const hasBody =
      req.headers['content-length'] !== undefined
        ? req.headers['content-length'] !== '0'
        : req.headers['transfer-encoding'] !== undefined;
    const forward = new ForwardRequest(
      req,
      res,
      seg,
      path,
      headers,
      hasBody,
      this.#shared,
      source,
      this.#proto === 'https',
    );
    forward.observe(conn.ctx, this.#flowSource, this.#flowVerdict, this.#flowRule, t0);
    forward.start(null);
  }

  /** Flow fields from the connection's verdict (a request that is not judged on its own). */
  #flowFromConnection(conn: ConnectionState): void {
    this.#flowSource = conn.source;
    this.#flowVerdict = conn.record.verdict === VERDICT_DENY ? FLOW_AUDIT : FLOW_ALLOW;
    this.#flowRule = conn.viaTrustedProxy ? RULE_TRUSTED_PROXY : conn.record.rule;
  }

  /** Flow record of a request answered by seglb itself (no backend). */
  #requestFlow(ctx: VipContext, status: number, t0: number): void {
    this.#shared.observer.request(
      ctx,
      this.#flowSource,
      this.#flowVerdict,
      this.#flowRule,
      '',
      status,
      0,
      0,
      performance.now() - t0,
      -1,
    );
  }

  /**
   * Re-derives a connection's state under the current context; null when now refused. With
   * `revoke: never` on the same segment the connection keeps its verdict and only moves to the
   * new snapshot's pool.
   */
  #rejudge(socket: SeglbSocket, conn: ConnectionState): ConnectionState | null {
    const ctx = this.#ctx;
    const keep = ctx.segment.config.revoke === 'never' && ctx.segment.name === conn.ctx.segment.name;
    const next = keep ? { ...conn, ctx } : decideConnection(ctx, conn.source, this.#shared);
    const target = (socket as SeglbSocket & { _parent?: SeglbSocket })._parent ?? socket;
    if (next !== null) {
      socket.seglb = next;
      target.seglb = next;
    }
    return next;
  }

  /**
   * Runs the per-request verdict where the connection needs one.
   * @returns the client address to forward as, or null when the request is denied (enforce mode)
   */
  #judge(req: Req, conn: ConnectionState, seg: SegmentRuntime): string | null {
    if (!conn.judgeRequests) return conn.source;
    let source = conn.source;
    let record: VerdictRecord = conn.record;
    const policy = conn.policy;
    if (conn.viaTrustedProxy) {
      source = clientFromForwardedFor(req.headers['x-forwarded-for'], conn.source, seg.xffTrusted as never);
      const q = this.#shared.quarantine.match(source);
      if (q !== undefined) {
        this.#flowSource = source;
        this.#flowVerdict = FLOW_DENY;
        this.#flowRule = RULE_QUARANTINE;
        this.#shared.counters.quarantineDenied++;
        logDeny(this.#shared, seg, conn.ctx, source, 'quarantine', `quarantined: ${q.reason}`);
        return null;
      }
      record = policy.lookup(source);
    }
    const verdict = policy.judgeRequest(record, {
      method: req.method ?? 'GET',
      path: normaliseRequestPath(req.url ?? '/'),
      rawPath: req.url ?? '/',
      host: requestHostName(req.headers.host),
      headers: req.headers,
    });
    policy.count(verdict.allowed, verdict.rule);
    this.#flowSource = source;
    this.#flowRule = verdict.rule;
    this.#flowVerdict = verdict.allowed ? FLOW_ALLOW : policy.mode === 'enforce' ? FLOW_DENY : FLOW_AUDIT;
    if (!verdict.allowed) {
      logDeny(this.#shared, seg, conn.ctx, source, policy.ruleName(verdict.rule), 'request not allowed', {
        method: req.method,
        path: req.url,
      });
      if (policy.mode === 'enforce') return null;
    }
    return source;
  }

  #onUpgrade(req: Req, socket: Socket, head: Buffer): void {
    let conn = req.socket.seglb ?? (socket as SeglbSocket).seglb;
    socket.on('error', () => socket.destroy());
    if (conn === undefined) {
      socket.destroy();
      return;
    }
    if (conn.ctx !== this.#ctx) {
      const next = this.#rejudge(req.socket, conn);
      if (next === null) {
        rawError(socket, 403, 'source no longer allowed by segment policy');
        return;
      }
      conn = next;
    }
    const seg = conn.ctx.segment;
    seg.counters.requests++;
    const refusal = checkRequestHead(req);
    if (refusal !== null) {
      this.#shared.counters.requestsRefused = (this.#shared.counters.requestsRefused ?? 0) + 1;
      rawError(socket, refusal[0], refusal[1]);
      return;
    }
    const t0 = performance.now();
    this.#flowFromConnection(conn);
    const source = this.#judge(req, conn, seg);
    // An upgrade's flow record is written when it is judged (101: handed on to the backend).
    this.#requestFlow(conn.ctx, source === null ? 403 : 101, t0);
    if (source === null) {
      seg.counters.responses403++;
      rawError(socket, 403, 'request not allowed by segment policy');
      return;
    }
    // Upgrades do not wait in the pool queue: a tunnel holds its backend for a long time.
    const pick: PickRequest = {
      source,
      path: req.url ?? '/',
      headers: req.headers,
      secure: this.#proto === 'https',
      setCookie: null,
    };
    const backend = seg.pool.tryAcquire(pick, null);
    if (backend === null || backend === BACKEND_FULL) {
      seg.counters.responses503++;
      const why = backend === null ? 'no usable backend' : 'every backend at max_connections';
      rawError(socket, 503, `${why} in pool ${seg.pool.name}`);
      return;
    }
    socket.once('close', () => seg.pool.release(backend));
    sanitiseUpgradeHeaders(req.headers, {
      client: source,
      peer: conn.source,
      trusted: conn.viaTrustedProxy,
      proto: this.#proto,
      xff: seg.forwarded.x_forwarded_for,
      xfProto: seg.forwarded.x_forwarded_proto,
      xfHost: seg.forwarded.x_forwarded_host,
    });
    resolveAllowedAddress(
      backend.endpoint.host,
      seg.backendSubnets,
      outboundObserver(seg, this.#shared),
      (err, address) => {
        if (err) {
          seg.counters.responses502++;
          rawError(
            socket,
            502,
            err instanceof PoolError ? err.message : 'backend address could not be resolved',
          );
          return;
        }
        const host = address.includes(':') ? `[${address}]` : address;
        this.#wsProxy ??= this.#createWsProxy();
        const tls = backend.tls;
        if (tls === null) {
          this.#wsProxy.ws(req, socket, head, { target: `http://${host}:${backend.endpoint.port}` });
          return;
        }
        // The agent's options win over the request's in node, so SNI is the pool's servername
        // (or none for an IP backend), never the client's Host header.
        this.#wsProxy.ws(req, socket, head, {
          target: `https://${host}:${backend.endpoint.port}`,
          secure: tls.rejectUnauthorized,
          agent: new HttpsAgent({
            servername: tls.servername ?? '',
            ca: tls.ca,
            rejectUnauthorized: tls.rejectUnauthorized,
          }),
        });
      },
    );
  }

  #createWsProxy(): ProxyServer {
    const proxy = createProxyServer({
      ws: true,
      xfwd: false,
      proxyTimeout: this.#ctx.timeouts.backend_response_ms,
    });
    proxy.on('error', (_err: Error, _req: unknown, res: unknown) => {
      const s = res as Socket | undefined;
      if (s && typeof s.destroy === 'function') {
        if (s.writable && !(s as Socket & { _httpMessage?: unknown })._httpMessage)
          rawError(s, 502, 'backend did not accept the upgrade');
        else s.destroy();
      }
    });
    return proxy;
  }
}

/**
 * One proxied request: picks a backend, dispatches through its undici pool, streams the response
 * back with backpressure, retries on another backend when the request never reached one.
 * Implements undici's DispatchHandler (onRequestStart ... onResponseEnd/onResponseError).
 */
class ForwardRequest implements Dispatcher.DispatchHandler, PickRequest, AssignHandler {
  /** PickRequest: the client address (after trusted X-Forwarded-For), for stickiness and hashing. */
  readonly source: string;
  /** PickRequest: the request target (origin-form). */
  readonly path: string;
  /** PickRequest: the client's request headers (hash key, sticky cookie). */
  readonly headers: IncomingMessage['headers'];
  /** PickRequest: the client came over HTTPS (the sticky cookie gets Secure). */
  readonly secure: boolean;
  /** PickRequest: a sticky cookie the response must set, or null (set by the pool). */
  setCookie: string | null = null;
  readonly #req: Req;
  readonly #res: ServerResponse;
  readonly #seg: SegmentRuntime;
  readonly #path: string;
  readonly #headers: string[];
  readonly #hasBody: boolean;
  readonly #shared: AcceptShared;
  #backend: Backend | null = null;
  #controller: Dispatcher.DispatchController | null = null;
  #attempt = 0;
  #done = false;
  #responded = false;
  /** Waiting in the pool queue (every backend at max_connections), else null. */
  #ticket: QueueTicket | null = null;
  /** On a retry: the status and reason to answer if no other backend takes it. */
  #lastError: [number, string] | null = null;
  /** The retry budget granted this request a retry (counted until it ends). */
  #retried = false;
  #poolEnded = false;
  // Flow record (src/observe), set by observe() and written when the response closes.
  #flowCtx: VipContext | null = null;
  #flowSource = '';
  #flowVerdict: FlowVerdict = FLOW_ALLOW;
  #flowRule = 0;
  #t0 = 0;
  #tDispatch = 0;
  #backendMs = -1;
  #bytesOut = 0;
  #backendName = '';

  constructor(
    req: Req,
    res: ServerResponse,
    seg: SegmentRuntime,
    path: string,
    headers: string[],
    hasBody: boolean,
    shared: AcceptShared,
    source: string,
    secure: boolean,
  ) {
    this.#req = req;
    this.#res = res;
    this.#seg = seg;
    this.#path = path;
    this.#headers = headers;
    this.#hasBody = hasBody;
    this.#shared = shared;
    this.source = source;
    this.path = path;
    this.headers = req.headers;
    this.secure = secure;
    seg.pool.requestStarted();
    res.once('close', this.#onClientClose);
  }

  /** Sets the flow record's fields; the record is written when the response closes. */
  observe(ctx: VipContext, source: string, verdict: FlowVerdict, rule: number, t0: number): void {
    this.#flowCtx = ctx;
    this.#flowSource = source;
    this.#flowVerdict = verdict;
    this.#flowRule = rule;
    this.#t0 = t0;
  }

  /**
   * Asks the pool for a backend other than `avoid` (stickiness, balancing, or a wait in the pool
   * queue while every backend is at max_connections); onAssigned then dispatches the request.
   * @param lastError - on a retry, the status and reason to answer if no other backend is usable
   */
  start(avoid: Backend | null, lastError: [number, string] | null = null): void {
    this.#lastError = lastError;
    this.#ticket = this.#seg.pool.assign(this, avoid, this);
  }

  /** AssignHandler: no backend (none usable, queue full or timed out). */
  onRejected(status: 503, reason: string): void {
    this.#ticket = null;
    const last = this.#lastError;
    if (last !== null) this.#fail(last[0], last[1]);
    else this.#fail(status, reason);
  }

  /** AssignHandler: a backend was assigned (at once, or after waiting in the queue). */
  onAssigned(backend: Backend): void {
    this.#ticket = null;
    const pool = this.#seg.pool;
    if (this.#done) {
      pool.release(backend);
      return;
    }
    this.#backend = backend;
    this.#backendName = backend.name;
    this.#tDispatch = performance.now();
    this.#controller = null;
    this.#responded = false;
    const req = this.#req;
    pool.dispatcher(backend).dispatch(
      {
        path: this.#path,
        method: req.method ?? 'GET',
        headers: this.#headers,
        body: this.#hasBody ? req : null,
        idempotent: IDEMPOTENT.has(req.method ?? 'GET') && !this.#hasBody,
        upgrade: null,
      },
      this,
    );
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#done) controller.abort(new Error('client went away'));
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    _headers: unknown,
    statusMessage?: string,
  ): void {
    if (statusCode < 200) return; // 1xx informational: node answers 100-continue itself
    const raw = (controller as unknown as { rawHeaders: (Buffer | string)[] }).rawHeaders ?? [];
    const res = this.#res;
    this.#responded = true;
    if (this.#backend !== null) this.#seg.pool.reportResponse(this.#backend, statusCode);
    const headers = buildDownstreamHeaders(raw);
    if (this.setCookie !== null) headers.push('set-cookie', this.setCookie);
    try {
      if (statusMessage) res.writeHead(statusCode, statusMessage, headers);
      else res.writeHead(statusCode, headers);
    } catch {
      controller.abort(new Error('invalid response head from backend'));
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#bytesOut += chunk.length;
    if (!this.#res.write(chunk)) {
      controller.pause();
      this.#res.once('drain', this.#resume);
    }
  }

  onResponseEnd(): void {
    this.#backendMs = performance.now() - this.#tDispatch;
    this.#finish();
    this.#res.end();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const backend = this.#backend;
    this.#finish();
    if (this.#done) return; // the client is gone; nothing to answer
    const code = (err as { code?: string }).code ?? '';
    if (backend !== null && code === 'SEGLB_POOL_OUTBOUND_DENIED') this.#seg.counters.outboundDenied++;
    if (!this.#responded && !this.#res.headersSent) {
      const neverSent = CONNECT_ERRORS.has(code);
      const pool = this.#seg.pool;
      // Outlier detection: a connection that failed or broke before a response counts against the
      // backend; a response timeout counts as the 504 it becomes.
      if (backend !== null && code !== 'SEGLB_POOL_OUTBOUND_DENIED') {
        if (neverSent || isResetBeforeResponse(code)) pool.reportConnectFailure(backend);
        else if (code === 'UND_ERR_HEADERS_TIMEOUT') pool.reportResponse(backend, 504);
      }
      const bodyUntouched = !this.#hasBody || !this.#req.readableDidRead;
      const retriable =
        bodyUntouched &&
        (neverSent || (IDEMPOTENT.has(this.#req.method ?? '') && isResetBeforeResponse(code)));
      const outcome = classify(code, err);
      this.#shared.log.warn(
        { segment: this.#seg.name, backend: backend?.name, code, err: err.message },
        outcome[1],
      );
      if (retriable && this.#attempt < pool.config.retries && code !== 'SEGLB_POOL_OUTBOUND_DENIED') {
        if (pool.tryRetry(this.#retried)) {
          this.#retried = true;
          this.#attempt++;
          this.#seg.counters.retries++;
          this.start(backend, outcome);
          return;
        }
        this.#fail(outcome[0], `${outcome[1]} (not retried: retry budget of pool ${pool.name} spent)`);
        return;
      }
      this.#fail(outcome[0], outcome[1]);
      return;
    }
    this.#res.destroy();
  }

  #finish(): void {
    const backend = this.#backend;
    if (backend !== null) {
      this.#backend = null;
      this.#seg.pool.release(backend);
    }
  }

  /** Writes the request's flow record (once, when the response closes). */
  #recordFlow(): void {
    const ctx = this.#flowCtx;
    if (ctx === null) return;
    this.#flowCtx = null;
    const res = this.#res;
    this.#shared.observer.request(
      ctx,
      this.#flowSource,
      this.#flowVerdict,
      this.#flowRule,
      this.#backendName,
      res.headersSent ? res.statusCode : 0,
      this.#hasBody ? Number(this.#req.headers['content-length']) || 0 : 0,
      this.#bytesOut,
      performance.now() - this.#t0,
      this.#backendMs,
    );
  }

  #fail(status: number, reason: string): void {
    sendError(this.#res, this.#seg, status, reason);
  }

  readonly #resume = (): void => {
    this.#controller?.resume();
  };

  readonly #onClientClose = (): void => {
    this.#recordFlow();
    this.#ticket?.cancel();
    this.#ticket = null;
    if (!this.#poolEnded) {
      this.#poolEnded = true;
      this.#seg.pool.requestEnded(this.#retried);
    }
    if (this.#res.writableFinished) return;
    this.#done = true;
    this.#controller?.abort(new Error('client went away'));
  };
}

function isResetBeforeResponse(code: string): boolean {
  return code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE';
}

/** Maps a forwarding error to the status the client gets and a short reason (nginx-like). */
function classify(code: string, err: Error): [number, string] {
  switch (code) {
    case 'SEGLB_POOL_OUTBOUND_DENIED':
      return [502, err.message];
    case 'UND_ERR_CONNECT_TIMEOUT':
      return [504, 'backend connect timeout'];
    case 'UND_ERR_HEADERS_TIMEOUT':
      return [504, 'backend response timeout'];
    case 'ECONNREFUSED':
      return [502, 'backend refused the connection'];
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return [502, 'backend hostname did not resolve'];
    case 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH':
      return [400, 'request body length does not match Content-Length'];
    default:
      return [502, 'backend connection failed'];
  }
}

/**
 * Answers a request with a short plain-text error naming the reason and a request id.
 * @param status - 400, 403, 502, 503 or 504
 */
export function sendError(res: ServerResponse, seg: SegmentRuntime, status: number, reason: string): void {
  if (status === 403) seg.counters.responses403++;
  else if (status === 502) seg.counters.responses502++;
  else if (status === 503) seg.counters.responses503++;
  else if (status === 504) seg.counters.responses504++;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const id = randomUUID();
  const body = `${status} ${STATUS_CODES[status]}: ${reason} (request id ${id})\n`;
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-request-id': id,
    'x-seglb-reason': reason.replace(/[^\x20-\x7e]/g, '?'),
  });
  res.end(body);
}

function rawError(socket: Socket, status: number, reason: string): void {
  const body = `${status} ${STATUS_CODES[status]}: ${reason}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nconnection: close\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

function outboundObserver(seg: SegmentRuntime, shared: AcceptShared) {
  return (host: string, address: string, allowed: boolean) => {
    if (!allowed) {
      seg.counters.outboundDenied++;
      shared.log.warn(
        { segment: seg.name, backend: host, address },
        'outbound connection refused: outside backend_subnets',
      );
    }
  };
}

/** node's shouldUpgradeCallback: only `Upgrade: websocket` is tunnelled (see the server options). */
function isWebSocketUpgrade(req: IncomingMessage): boolean {
  const upgrade = req.headers.upgrade;
  return upgrade !== undefined && upgrade.toLowerCase() === 'websocket';
}

/** Converts an absolute-form target (RFC 9112 §3.2.2) to origin-form; null when invalid. */
function originForm(target: string): string | null {
  try {
    const u = new URL(target);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
    return u.pathname + u.search;
  } catch {
    return null;
  }
}

/** SNI lookup: exact names first, then `*.suffix` wildcards, else the first certificate. */
function buildSniContexts(material: readonly TlsMaterial[]): { lookup(name: string): SecureContext } {
  const exact = new Map<string, SecureContext>();
  const wildcard: [string, SecureContext][] = [];
  let fallback: SecureContext | undefined;
  for (const m of material) {
    const ctx = createSecureContext({ cert: m.cert, key: m.key });
    fallback ??= ctx;
    for (const n of m.servernames) {
      const name = n.toLowerCase();
      if (name.startsWith('*.')) wildcard.push([name.slice(1), ctx]);
      else exact.set(name, ctx);
    }
  }
  return {
    lookup(name: string): SecureContext {
      const lower = name.toLowerCase();
      const hit = exact.get(lower);
      if (hit) return hit;
      for (const [suffix, ctx] of wildcard)
        if (lower.endsWith(suffix) && lower.length > suffix.length) return ctx;
      return fallback as SecureContext;
    },
  };
}

/**
 * Binds a server. A `[::]` VIP is dual-stack unless ipv6Only.
 * @param reusePort - bind with SO_REUSEPORT (Linux): other processes may bind the same address and
 *   the kernel spreads new connections across all of them (Node's `reusePort` listen option)
 * @returns the bound address
 * @throws the bind error (EADDRINUSE, EACCES, ...)
 */
export function listenOn(
  server: import('node:net').Server,
  host: string,
  port: number,
  ipv6Only: boolean,
  reusePort = false,
): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, ipv6Only, reusePort, backlog: 4096 }, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

/**
 * Drains a listener: stop accepting, wait for `active` to empty (calling `nudge` to close idle
 * keep-alive connections), destroy what remains after `graceMs`.
 */
export async function closeGracefully(
  server: import('node:net').Server,
  active: Set<Socket>,
  graceMs: number,
  nudge: () => void,
): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  const deadline = Date.now() + graceMs;
  while (active.size > 0 && Date.now() < deadline) {
    nudge();
    await new Promise((r) => setTimeout(r, 25));
  }
  for (const s of active) s.destroy();
  await closed;
}

export { VERDICT_L7 };
