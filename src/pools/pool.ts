// A backend pool as one segment uses it in one snapshot: members over the pool's shared state, the
// balancing algorithm, stickiness, the wait queue for full backends, per-backend undici keep-alive
// connection pools (HTTP, optionally TLS) and the outbound check on every dial.

import type { IncomingHttpHeaders } from 'node:http';
import { Pool as UndiciPool } from 'undici';
import type { LimitsConfig, PoolConfig, TimeoutsConfig } from '../config/types.ts';
import type { PoolMaterial } from '../config/validate-pools.ts';
import { type Endpoint, parseEndpoint } from '../net/endpoint.ts';
import type { SourceSet } from '../policy/index.ts';
import { isFull, type LbAlgorithm, type PoolMember } from './algorithm.ts';
import { getAlgorithm } from './algorithms.ts';
import type { BackendAdminState, BackendState, CheckRecord, HealthVerdict } from './backend-state.ts';
import { type BackendTlsOptions, backendTlsOptions } from './backend-tls.ts';
import { hashRange, hashString, XorShift32 } from './key-hash.ts';
import { createCheckedConnector, type OutboundObserver } from './outbound.ts';
import type { PoolCounters, PoolState } from './pool-state.ts';
import { cookieValueEnd, findCookie, StickyCookie } from './sticky-cookie.ts';
import type { QueueWaiter } from './wait-queue.ts';

export type { BackendAdminState } from './backend-state.ts';

/** What tryAcquire() returns when every usable backend is at max_connections. */
export const BACKEND_FULL = 'full' as const;

/** What the pool reads from a request or connection to pick a backend. */
export interface PickRequest {
  /** The client address (normalised; after PROXY protocol or trusted X-Forwarded-For). */
  readonly source: string;
  /** HTTP request target (origin-form); '' for TCP. */
  readonly path: string;
  /** HTTP request headers; null for TCP. */
  readonly headers: IncomingHttpHeaders | null;
  /** The client came over HTTPS: a sticky cookie gets `Secure`. */
  readonly secure: boolean;
  /** Set by the pool: a Set-Cookie value the response must carry (a new or corrected sticky cookie). */
  setCookie: string | null;
}

/** Receives the outcome of assign(), exactly once. */
export interface AssignHandler {
  /** A backend was assigned (counted in flight): release() it when done. */
  onAssigned(backend: Backend): void;
  /** No backend: answer 503 with this reason (TCP: close). */
  onRejected(status: 503, reason: string): void;
}

/** A queued request or connection; cancel it when the client goes away. */
export interface QueueTicket {
  cancel(): void;
}

/** One backend of a pool in one snapshot; counters and health live in its shared BackendState. */
export class Backend implements PoolMember {
  readonly id: number;
  readonly name: string;
  readonly weight: number;
  readonly backup: boolean;
  readonly maxConnections: number;
  /** `host:port` as configured. */
  readonly address: string;
  readonly key: string;
  readonly endpoint: Endpoint;
  readonly state: BackendState;
  /** TLS options for connections to it, or null for plain TCP. */
  readonly tls: BackendTlsOptions | null;
  /** Copied from state.usable when the pool's state version moves (the algorithm reads it). */
  usable = true;

  constructor(
    id: number,
    config: PoolConfig['backends'][number],
    state: BackendState,
    tls: BackendTlsOptions | null,
    endpoint: Endpoint,
  ) {
    this.id = id;
    this.name = config.name ?? config.address;
    this.weight = config.weight;
    this.backup = config.backup;
    this.maxConnections = config.max_connections;
    this.address = config.address;
    this.key = config.address;
    this.endpoint = endpoint;
    this.state = state;
    this.tls = tls;
  }

  /** In flight over every segment and snapshot using the pool. */
  get inflight(): number {
    return this.state.inflight;
  }
  set inflight(n: number) {
    this.state.inflight = n;
  }
  get adminState(): BackendAdminState {
    return this.state.adminState;
  }
  get served(): number {
    return this.state.served;
  }
  get failures(): number {
    return this.state.failures;
  }
}

/** Options shared by the pools of one runtime snapshot. */
export interface PoolOptions {
  readonly timeouts: TimeoutsConfig;
  readonly limits: LimitsConfig;
  /** The segment's compiled backend_subnets. */
  readonly subnets: SourceSet;
  readonly observeOutbound: OutboundObserver;
  /** The pool's shared state (PoolStateRegistry.prepare). */
  readonly state: PoolState;
  /** Sticky-cookie key and backend CA read at load; null when the pool needs neither. */
  readonly material?: PoolMaterial | null;
  /**
   * undici pools of a previous snapshot, by `address`, to reuse (reload keeps warm connections to
   * backends that remain). Reused pools are removed from the map; the caller closes the rest.
   */
  readonly reuse?: Map<string, UndiciPool>;
}

/** One backend in status(). */
export interface BackendStatus {
  readonly name: string;
  readonly address: string;
  readonly weight: number;
  readonly backup: boolean;
  readonly maxConnections: number;
  readonly adminState: BackendAdminState;
  /** This node's active-check verdict; `up` without checks. */
  readonly health: HealthVerdict;
  /**
   * The majority verdict of the live cluster nodes reporting the backend; null without a cluster or
   * reports. It decides instead of `health` with `health_check.cluster_view: majority`.
   */
  readonly clusterHealth: HealthVerdict | null;
  readonly lastCheck: CheckRecord | null;
  /** ms since the epoch while ejected, else null. */
  readonly ejectedUntil: number | null;
  readonly ejections: number;
  /** In service: health up and not ejected. */
  readonly healthy: boolean;
  /** New requests may go here now (healthy and ready, or panic mode). */
  readonly usable: boolean;
  readonly inflight: number;
  readonly served: number;
  readonly failures: number;
  readonly responses5xx: number;
  readonly consecutiveConnectFailures: number;
  readonly consecutive5xx: number;
}

/** status() of a pool. */
export interface PoolStatus {
  readonly name: string;
  readonly algorithm: PoolConfig['algorithm'];
  readonly panic: boolean;
  readonly queued: number;
  readonly queueRejected: number;
  readonly queueTimedOut: number;
  readonly activeRequests: number;
  readonly activeRetries: number;
  readonly retryBudgetExhausted: number;
  /** Retries the budget still allows in the current window. */
  readonly retryBudgetLeft: number;
  readonly stickyEntries: number;
  readonly counters: Readonly<PoolCounters>;
  readonly backends: readonly BackendStatus[];
}

type HashKey = 'source' | 'path' | 'header' | 'cookie';

/**
 * A segment's backend pool in one snapshot. Picking is allocation-free on the common path (the
 * algorithm precomputes its tables when members change; stickiness is a map lookup).
 */
export class BackendPool {
  readonly name: string;
  readonly config: PoolConfig;
  readonly backends: readonly Backend[];
  readonly #algorithm: LbAlgorithm;
  readonly #needsKey: boolean;
  readonly #hashKey: HashKey;
  readonly #hashName: string;
  readonly #random = new XorShift32();
  readonly #byAddress = new Map<string, Backend>();
  readonly #cookie: StickyCookie | null;
  readonly #shared: PoolState;
  readonly #dispatchers: (UndiciPool | null)[];
  readonly #options: PoolOptions;
  /** PoolState.version last copied into the members' `usable`. */
  #version = -1;

  /**
   * @param name - pool name (for logs and status)
   * @param config - validated pool config
   * @param options - timeouts, limits, outbound subnets, shared state and dispatchers to reuse
   */
  constructor(name: string, config: PoolConfig, options: PoolOptions) {
    this.name = name;
    this.config = config;
    this.#options = options;
    this.#shared = options.state;
    const ca = options.material?.ca ?? null;
    this.backends = config.backends.map((b, id) => {
      const endpoint = parseEndpoint(b.address);
      const state = options.state.backend(b.address, b.name ?? b.address);
      const backend = new Backend(id, b, state, backendTlsOptions(config.tls, ca, endpoint.host), endpoint);
      this.#byAddress.set(b.address, backend);
      return backend;
    });
    const descriptor = getAlgorithm(config.algorithm);
    this.#algorithm = descriptor.create(this.backends, { hashTableSize: config.hash.table_size });
    this.#needsKey = descriptor.needsKey;
    this.#hashKey = config.algorithm === 'source_hash' ? 'source' : config.hash.key;
    this.#hashName = (config.hash.name ?? '').toLowerCase();
    const cookie = config.sticky?.cookie;
    const key = options.material?.stickyKey ?? null;
    this.#cookie =
      cookie !== undefined && key !== null
        ? new StickyCookie(
            name,
            cookie.name,
            key,
            config.backends.map((b) => b.address),
            cookie.max_age_s,
          )
        : null;
    this.#dispatchers = this.backends.map((b) => {
      const reused = options.reuse?.get(b.address);
      if (reused) options.reuse?.delete(b.address);
      return reused ?? null;
    });
  }

  /** The pool's state shared across snapshots and segments. */
  get shared(): PoolState {
    return this.#shared;
  }

  /**
   * Picks a backend now and counts it in flight. Stickiness first (signed cookie, then the source
   * table), unless this is a retry; then the algorithm.
   * @param req - what the pick may read (source, path, headers); its setCookie may be set
   * @param avoid - the backend that just failed for this request, or null
   * @returns the backend; BACKEND_FULL when every usable backend (or the sticky one) is at
   *   max_connections; null when none is usable (or only `avoid` is)
   */
  tryAcquire(req: PickRequest, avoid: Backend | null): Backend | typeof BACKEND_FULL | null {
    this.#sync();
    let named: string | null = null;
    if (avoid === null) {
      if (this.#cookie !== null && req.headers !== null) {
        named = this.#cookie.lookup(joinedCookie(req.headers));
        const b = named === null ? undefined : this.#byAddress.get(named);
        if (b !== undefined && canStick(b)) return this.#takeSticky(req, b, named);
      }
      const table = this.#shared.sticky;
      if (table !== null) {
        const address = table.get(req.source, Date.now());
        const b = address === undefined ? undefined : this.#byAddress.get(address);
        if (b !== undefined && canStick(b)) return this.#takeSticky(req, b, named);
      }
    }
    const hash = this.#needsKey ? this.#keyHash(req) : 0;
    const outcome = this.#algorithm.pick(avoid, hash);
    if (outcome.kind === 'full') return BACKEND_FULL;
    if (outcome.kind === 'none') return null;
    const b = outcome.member as Backend;
    if (avoid !== null && b === avoid) return null;
    this.#take(b);
    this.#remember(req, b, named);
    return b;
  }

  /**
   * Picks a backend, or queues the request while every usable backend is full.
   * @param handler - gets onAssigned (synchronously when a backend is free) or onRejected (503: no
   *   usable backend, queue full, or queue_timeout_ms passed)
   * @returns a ticket while queued (cancel it if the client goes away), else null
   */
  assign(req: PickRequest, avoid: Backend | null, handler: AssignHandler): QueueTicket | null {
    const r = this.tryAcquire(req, avoid);
    if (r === BACKEND_FULL) {
      const queue = this.#shared.queue;
      const size = this.config.queue_size;
      if (queue.length >= size) {
        queue.rejectedFull++;
        handler.onRejected(
          503,
          size === 0
            ? `every backend of pool ${this.name} is at max_connections`
            : `queue of pool ${this.name} is full (${size} waiting)`,
        );
        return null;
      }
      const waiter = new PoolWaiter(this, req, avoid, handler);
      queue.push(waiter);
      waiter.arm(this.config.queue_timeout_ms);
      return waiter;
    }
    if (r === null) handler.onRejected(503, `no usable backend in pool ${this.name}`);
    else handler.onAssigned(r);
    return null;
  }

  /** Ends an in-flight request or connection started by tryAcquire()/assign(); serves the queue. */
  release(b: Backend): void {
    b.state.inflight--;
    this.#algorithm.onRelease?.(b);
    const queue = this.#shared.queue;
    if (queue.length > 0) queue.serve();
  }

  /** A request (HTTP) or connection (TCP) to the pool starts: a deposit in the retry budget. */
  requestStarted(): void {
    const budget = this.#shared.budget;
    budget.active++;
    budget.deposit(Date.now());
  }

  /** It ended. @param retried - tryRetry() allowed it at least one retry */
  requestEnded(retried: boolean): void {
    const budget = this.#shared.budget;
    budget.active--;
    if (retried) budget.retrying--;
  }

  /**
   * A request wants a retry (each retry asks). @returns true when the retry budget allows it
   * @param retriedBefore - an earlier retry of this request was allowed (counted once in `retrying`)
   */
  tryRetry(retriedBefore: boolean): boolean {
    const budget = this.#shared.budget;
    if (!budget.tryWithdraw(Date.now())) return false;
    if (!retriedBefore) budget.retrying++;
    return true;
  }

  /** A connection to `b` failed before a response (outlier detection). */
  reportConnectFailure(b: Backend): void {
    this.#shared.reportConnectFailure(b.state);
  }

  /** `b` answered `status`, or seglb answered 502/504 for it after connecting (outlier detection). */
  reportResponse(b: Backend, status: number): void {
    this.#shared.reportResponse(b.state, status);
  }

  /** A TCP connection to `b` is established. */
  reportConnected(b: Backend): void {
    this.#shared.reportConnected(b.state);
  }

  /**
   * Sets a backend's administrative state (shared by every segment and kept across reloads).
   * `drain`: no new requests except sticky clients, existing ones finish; `maintenance`: none at all.
   * @param id - backend id (index in config order)
   */
  setAdminState(id: number, state: BackendAdminState): void {
    const b = this.backends[id];
    if (b) this.#shared.setAdminState(b.state, state);
  }

  /** The state of every backend and of the pool (admin API and metrics read this). */
  status(): PoolStatus {
    this.#sync();
    const s = this.#shared;
    const now = Date.now();
    return {
      name: this.name,
      algorithm: this.config.algorithm,
      panic: s.panic,
      queued: s.queue.length,
      queueRejected: s.queue.rejectedFull,
      queueTimedOut: s.queue.timedOut,
      activeRequests: s.budget.active,
      activeRetries: s.budget.retrying,
      retryBudgetExhausted: s.budget.exhausted,
      retryBudgetLeft: Math.floor(s.budget.allowance(now) - s.budget.withdrawn),
      stickyEntries: s.sticky?.size ?? 0,
      counters: { ...s.counters },
      backends: this.backends.map((b) => {
        const st = b.state;
        return {
          name: b.name,
          address: b.address,
          weight: b.weight,
          backup: b.backup,
          maxConnections: b.maxConnections,
          adminState: st.adminState,
          health: st.health,
          clusterHealth: st.clusterHealth,
          lastCheck: st.lastCheck,
          ejectedUntil: st.isEjected(now) ? st.ejectedUntil : null,
          ejections: st.ejections,
          healthy: st.healthy,
          usable: b.usable,
          inflight: st.inflight,
          served: st.served,
          failures: st.failures,
          responses5xx: st.responses5xx,
          consecutiveConnectFailures: st.consecutiveConnectFailures,
          consecutive5xx: st.consecutive5xx,
        };
      }),
    };
  }

  /**
   * The keep-alive connection pool to an HTTP backend (created on first use). Every new connection
   * runs the outbound check (createCheckedConnector), and TLS when the pool says so.
   */
  dispatcher(b: Backend): UndiciPool {
    let d = this.#dispatchers[b.id];
    if (!d) {
      const t = this.#options.timeouts;
      const host = b.endpoint.family === 6 ? `[${b.endpoint.host}]` : b.endpoint.host;
      d = new UndiciPool(`${b.tls ? 'https' : 'http'}://${host}:${b.endpoint.port}`, {
        connections: this.#options.limits.backend_connections,
        pipelining: 1,
        keepAliveTimeout: 4_000,
        keepAliveMaxTimeout: 600_000,
        headersTimeout: t.backend_response_ms,
        bodyTimeout: t.backend_idle_ms,
        strictContentLength: true,
        connect: createCheckedConnector(
          t.backend_connect_ms,
          this.#options.subnets,
          this.#options.observeOutbound,
          b.tls,
        ),
      });
      this.#dispatchers[b.id] = d;
    }
    return d;
  }

  /** The undici pools in use, by backend address (handed to the next snapshot on reload). */
  dispatchersByAddress(): Map<string, UndiciPool> {
    const out = new Map<string, UndiciPool>();
    this.backends.forEach((b, i) => {
      const d = this.#dispatchers[i];
      if (d) out.set(b.address, d);
    });
    return out;
  }

  /** Closes every backend connection pool gracefully (in-flight requests finish). */
  async close(): Promise<void> {
    await Promise.all(this.#dispatchers.map((d) => d?.close()));
  }

  /** Copies the shared usable flags into the members when the pool state moved, and rebuilds tables. */
  #sync(): void {
    const version = this.#shared.version;
    if (version === this.#version) return;
    this.#version = version;
    for (const b of this.backends) b.usable = b.state.usable;
    this.#algorithm.onMembersChanged();
  }

  #take(b: Backend): void {
    b.state.inflight++;
    b.state.served++;
    this.#algorithm.onTake?.(b);
  }

  #takeSticky(req: PickRequest, b: Backend, named: string | null): Backend | typeof BACKEND_FULL {
    if (isFull(b)) return BACKEND_FULL; // wait for this one (HAProxy queues on the persisted server)
    this.#take(b);
    this.#remember(req, b, named);
    return b;
  }

  /** Records stickiness for the next request: source table entry, cookie when it must change. */
  #remember(req: PickRequest, b: Backend, named: string | null): void {
    if (this.#cookie !== null && req.headers !== null && named !== b.address)
      req.setCookie = this.#cookie.setCookieFor(b.address, req.secure) ?? null;
    if (this.#shared.sticky?.set(req.source, b.address, Date.now()))
      this.#shared.stuck(req.source, b.address);
  }

  /** The request key's hash for hash algorithms; a random one when the key is missing (Envoy too). */
  #keyHash(req: PickRequest): number {
    switch (this.#hashKey) {
      case 'source':
        return hashString(req.source);
      case 'path': {
        const p = req.path;
        if (p.length === 0) return this.#random.next();
        const q = p.indexOf('?');
        return hashRange(p, 0, q < 0 ? p.length : q);
      }
      case 'header': {
        const v = req.headers?.[this.#hashName];
        if (v === undefined) return this.#random.next();
        return hashString(typeof v === 'string' ? v : v.join(', '));
      }
      case 'cookie': {
        const h = req.headers === null ? undefined : joinedCookie(req.headers);
        const start = h === undefined ? -1 : findCookie(h, this.config.hash.name ?? '');
        if (h === undefined || start < 0) return this.#random.next();
        return hashRange(h, start, cookieValueEnd(h, start));
      }
    }
  }
}

/** A backend a sticky client may return to: in service (or panic), draining included. */
function canStick(b: Backend): boolean {
  const s = b.state;
  return s.adminState !== 'maintenance' && (s.healthy || b.usable);
}

/** node joins repeated Cookie headers with "; " (RFC 6265 §5.4), so this is a string or undefined. */
function joinedCookie(headers: IncomingHttpHeaders): string | undefined {
  return headers.cookie;
}

/** A request or connection waiting in the pool queue. */
class PoolWaiter implements QueueWaiter, QueueTicket {
  readonly #pool: BackendPool;
  readonly #req: PickRequest;
  readonly #avoid: Backend | null;
  readonly #handler: AssignHandler;
  #timer: NodeJS.Timeout | undefined;
  #done = false;

  constructor(pool: BackendPool, req: PickRequest, avoid: Backend | null, handler: AssignHandler) {
    this.#pool = pool;
    this.#req = req;
    this.#avoid = avoid;
    this.#handler = handler;
  }

  arm(timeoutMs: number): void {
    this.#timer = setTimeout(this.#onTimeout, timeoutMs);
  }

  tryServe(): 'served' | 'full' {
    if (this.#done) return 'served';
    const r = this.#pool.tryAcquire(this.#req, this.#avoid);
    if (r === BACKEND_FULL) return 'full';
    this.#done = true;
    clearTimeout(this.#timer);
    if (r === null) this.#handler.onRejected(503, `no usable backend in pool ${this.#pool.name}`);
    else this.#handler.onAssigned(r);
    return 'served';
  }

  cancel(): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    this.#pool.shared.queue.remove(this);
  }

  readonly #onTimeout = (): void => {
    if (this.#done) return;
    this.#done = true;
    const queue = this.#pool.shared.queue;
    queue.remove(this);
    queue.timedOut++;
    this.#handler.onRejected(
      503,
      `queue timeout: every backend of pool ${this.#pool.name} stayed at max_connections for ${this.#pool.config.queue_timeout_ms} ms`,
    );
  };
}
