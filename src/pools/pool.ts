// A backend pool as one segment uses it: members, the balancing algorithm, per-backend undici
// keep-alive connection pools (HTTP) and the outbound check on every dial.

import { Pool as UndiciPool } from 'undici';
import type { LimitsConfig, PoolConfig, TimeoutsConfig } from '../config/types.ts';
import { type Endpoint, parseEndpoint } from '../net/endpoint.ts';
import type { SourceSet } from '../policy/index.ts';
import type { LbAlgorithm, PoolMember } from './algorithm.ts';
import { getAlgorithm } from './algorithms.ts';
import { createCheckedConnector, type OutboundObserver } from './outbound.ts';

/** Administrative state of a backend (issue 4 adds health and ejection on top). */
export type BackendAdminState = 'ready' | 'drain' | 'maintenance';

/** One backend of a pool with its connection pool. */
export interface Backend extends PoolMember {
  /** `host:port` as configured. */
  readonly address: string;
  readonly endpoint: Endpoint;
  adminState: BackendAdminState;
  /** Requests or connections served (assigned), for status and tests. */
  served: number;
  /** Connect failures seen. */
  failures: number;
}

/** Options shared by the pools of one runtime snapshot. */
export interface PoolOptions {
  readonly timeouts: TimeoutsConfig;
  readonly limits: LimitsConfig;
  /** The segment's compiled backend_subnets. */
  readonly subnets: SourceSet;
  readonly observeOutbound: OutboundObserver;
  /**
   * undici pools of a previous snapshot, by `address`, to reuse (reload keeps warm connections to
   * backends that remain). Reused pools are removed from the map; the caller closes the rest.
   */
  readonly reuse?: Map<string, UndiciPool>;
}

/**
 * A segment's backend pool.
 * Picking is O(1) and allocation-free (the algorithm precomputes its tables when members change).
 */
export class BackendPool {
  readonly name: string;
  readonly config: PoolConfig;
  readonly backends: readonly Backend[];
  readonly #algorithm: LbAlgorithm;
  readonly #dispatchers: (UndiciPool | null)[];
  readonly #options: PoolOptions;

  /**
   * @param name - pool name (for logs and status)
   * @param config - validated pool config
   * @param options - timeouts, limits, outbound subnets and dispatchers to reuse
   */
  constructor(name: string, config: PoolConfig, options: PoolOptions) {
    this.name = name;
    this.config = config;
    this.#options = options;
    this.backends = config.backends.map(
      (b, id): Backend => ({
        id,
        name: b.name ?? b.address,
        weight: b.weight,
        backup: b.backup,
        inflight: 0,
        usable: true,
        address: b.address,
        endpoint: parseEndpoint(b.address),
        adminState: 'ready',
        served: 0,
        failures: 0,
      }),
    );
    this.#algorithm = getAlgorithm(config.algorithm).create(this.backends);
    this.#dispatchers = this.backends.map((b) => {
      const reused = options.reuse?.get(b.address);
      if (reused) options.reuse?.delete(b.address);
      return reused ?? null;
    });
  }

  /**
   * Picks a backend for a new request or connection and counts it as in flight.
   * @param avoid - the backend that just failed for this request, or null
   * @returns the backend, or null when none is usable (the caller answers 503)
   */
  acquire(avoid: Backend | null): Backend | null {
    const outcome = this.#algorithm.pick(avoid);
    if (outcome.kind !== 'ok') return null;
    const b = outcome.member as Backend;
    if (avoid !== null && b === avoid) return null;
    b.inflight++;
    b.served++;
    this.#algorithm.onTake?.(b);
    return b;
  }

  /** Ends an in-flight request or connection started by acquire(). */
  release(b: Backend): void {
    b.inflight--;
    this.#algorithm.onRelease?.(b);
  }

  /** Records a connect failure (issue 4's outlier ejection builds on this). */
  recordFailure(b: Backend): void {
    b.failures++;
  }

  /**
   * Sets a backend's administrative state. `drain` and `maintenance` stop new picks at once.
   * @param id - backend id (index in config order)
   */
  setAdminState(id: number, state: BackendAdminState): void {
    const b = this.backends[id];
    if (!b) return;
    b.adminState = state;
    b.usable = state === 'ready';
    this.#algorithm.onMembersChanged();
  }

  /**
   * The keep-alive connection pool to an HTTP backend (created on first use).
   * Every new connection runs the outbound check (createCheckedConnector).
   */
  dispatcher(b: Backend): UndiciPool {
    let d = this.#dispatchers[b.id];
    if (!d) {
      const t = this.#options.timeouts;
      const host = b.endpoint.family === 6 ? `[${b.endpoint.host}]` : b.endpoint.host;
      d = new UndiciPool(`http://${host}:${b.endpoint.port}`, {
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
}
