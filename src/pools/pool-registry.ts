// The Runtime's table of PoolStates by pool name: it hands each new snapshot's BackendPools the
// state of their pool (so health, ejection, queue, budget and stickiness survive reloads and are one
// per pool however many segments use it), runs one health checker per pool, and prunes on commit.

import type { LoadedConfig } from '../config/index.ts';
import type { PoolConfig } from '../config/types.ts';
import { parseEndpoint } from '../net/endpoint.ts';
import type { Logger } from '../observe/log.ts';
import { SourceSet } from '../policy/index.ts';
import { backendTlsOptions } from './backend-tls.ts';
import { HealthChecker } from './health/checker.ts';
import { PoolState, type PoolStateListener } from './pool-state.ts';

/** How often expired source-stickiness entries are swept. */
const SWEEP_INTERVAL_MS = 1000;

/** Every pool's shared state; one per Runtime (tests may run several: no globals). */
export class PoolStateRegistry {
  readonly #log: Logger;
  readonly #pools = new Map<string, PoolState>();
  readonly #sweep: NodeJS.Timeout;
  #listener: PoolStateListener | null = null;
  #closed = false;

  /** @param log - where backend and pool state changes are logged */
  constructor(log: Logger) {
    this.#log = log;
    this.#sweep = setInterval(() => {
      const now = Date.now();
      for (const p of this.#pools.values()) p.sweep(now);
    }, SWEEP_INTERVAL_MS);
    this.#sweep.unref();
  }

  /**
   * The state for a pool of a snapshot being built, with a state for each of its backends. Creates
   * what is missing and changes nothing in use, so a reload that fails later leaves the live
   * snapshot untouched (commit() with the live config then forgets the additions).
   */
  prepare(name: string, config: PoolConfig): PoolState {
    let p = this.#pools.get(name);
    if (p === undefined) {
      p = new PoolState(name, config, this.#log);
      p.listener = this.#listener;
      this.#pools.set(name, p);
    }
    for (const b of config.backends) p.backend(b.address, b.name ?? b.address);
    return p;
  }

  /**
   * Adopts a config that is now live: pools it lacks are closed and forgotten, the others take its
   * backends and settings, and health checkers start, restart (settings, backends, subnets or CA
   * changed) or stop. A pool is checked once, with the union of the backend_subnets of the segments
   * using it as the allowed destinations.
   */
  commit(loaded: LoadedConfig): void {
    if (this.#closed) return;
    const cfg = loaded.config;
    for (const [name, p] of this.#pools) {
      if (Object.hasOwn(cfg.pools, name)) continue;
      p.close();
      this.#pools.delete(name);
    }
    for (const [name, config] of Object.entries(cfg.pools)) {
      const p = this.prepare(name, config);
      p.apply(config);
      const subnetTexts: string[] = [];
      const cidrs = [];
      for (const [segName, seg] of Object.entries(cfg.segments)) {
        if (seg.pool !== name) continue;
        for (const c of loaded.backendSubnets.get(segName) ?? []) {
          cidrs.push(c);
          subnetTexts.push(c.text);
        }
      }
      const hc = config.health_check;
      const ca = loaded.pools.get(name)?.ca ?? null;
      const key = JSON.stringify([
        hc,
        config.tls,
        ca,
        config.backends.map((b) => b.address),
        subnetTexts.sort(),
      ]);
      if (hc === undefined) {
        p.ensureChecker(key, null);
        continue;
      }
      const backends = config.backends.map((b) => {
        const endpoint = parseEndpoint(b.address);
        const state = p.backend(b.address, b.name ?? b.address);
        return { state, endpoint, tls: backendTlsOptions(config.tls, ca, endpoint.host) };
      });
      const subnets = new SourceSet(cidrs);
      p.ensureChecker(key, (report) => new HealthChecker(hc, backends, subnets, report));
    }
  }

  /**
   * Installs what every pool, present and future, tells of health verdicts and sticky entries (the
   * cluster link); null removes it.
   */
  setListener(listener: PoolStateListener | null): void {
    this.#listener = listener;
    for (const p of this.#pools.values()) p.listener = listener;
  }

  /** A pool's state, if the pool exists. */
  get(name: string): PoolState | undefined {
    return this.#pools.get(name);
  }

  /** Every pool's state, by name. */
  entries(): IterableIterator<[string, PoolState]> {
    return this.#pools.entries();
  }

  /** Stops every checker and timer (Runtime.stop). */
  close(): void {
    this.#closed = true;
    clearInterval(this.#sweep);
    for (const p of this.#pools.values()) p.close();
  }
}
