// Builds the runtime snapshot from a loaded config (compiled policies, pools, per-VIP contexts),
// opens the VIP listeners, and swaps snapshots on reload in one assignment per listener; the
// control plane produces snapshots, the data plane only reads them.

import { createHash } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Pool as UndiciPool } from 'undici';
import type { LoadedConfig, VipConfig } from './config/index.ts';
import { ListenerError } from './errors.ts';
import { type AcceptShared, decideConnection, type SeglbSocket } from './listeners/accept.ts';
import { newSegmentCounters, type SegmentRuntime, type VipContext } from './listeners/context.ts';
import { HttpVip } from './listeners/http.ts';
import { TcpVip } from './listeners/tcp.ts';
import { LARGE_LOAD_PREFIXES, releaseHeapMemory } from './memory.ts';
import { parseEndpoint } from './net/endpoint.ts';
import { ipsetSize, PackedCidrMap } from './net/packed-cidrs.ts';
import { Observer } from './observe/index.ts';
import { type Logger, LogRateLimiter } from './observe/log.ts';
import { ObservedSources } from './observe/sources.ts';
import {
  compileSegmentPolicy,
  expandSources,
  Quarantine,
  type QuarantineEntry,
  SourceSet,
} from './policy/index.ts';
import { type BackendAdminState, BackendPool, PoolStateRegistry, startDemoBackend } from './pools/index.ts';

/** One immutable runtime snapshot. */
export interface Snapshot {
  /** Monotonic, starting at 1; +1 per applied config. */
  readonly version: number;
  /** SHA-256 (hex, first 16 digits) of the effective configuration: the policy hash peers compare. */
  readonly hash: string;
  readonly loaded: LoadedConfig;
  readonly segments: ReadonlyMap<string, SegmentRuntime>;
  /** Per VIP key (see vipKey): its context. */
  readonly vips: ReadonlyMap<string, VipContext>;
}

/** A bound VIP, for start-up messages and tests. */
export interface BoundVip {
  readonly segment: string;
  readonly protocol: VipConfig['protocol'];
  readonly listen: string;
  /** Actual bound address and port (the port is resolved when the config said 0). */
  readonly address: string;
  readonly port: number;
}

type Listener = HttpVip | TcpVip;

/**
 * The running seglb: one per process (tests may run several side by side: no globals).
 * Create with `Runtime.start(loaded, log)`.
 */
export class Runtime {
  readonly quarantine: Quarantine;
  readonly log: Logger;
  readonly shared: AcceptShared;
  /** Flow records, metrics counters, detectors and the event feed (src/observe). */
  readonly observer: Observer;
  #snapshot: Snapshot;
  readonly #listeners = new Map<string, { listener: Listener; ctx: VipContext; bound: AddressInfo }>();
  readonly #demo = new Map<string, Server>();
  #stopping = false;
  #housekeeping: NodeJS.Timeout | undefined;
  /** The "started without --expose-gc" hint was logged (once per process). */
  #releaseHinted = false;
  /** Backend admin states set at runtime, by `pool NUL address`. */
  readonly #backendStates = new Map<string, BackendAdminState>();

  /**
   * Every pool's state that outlives snapshots (health, ejection, queue, retry budget, stickiness)
   * and its health checker: one per pool, however many segments use it.
   */
  readonly pools: PoolStateRegistry;

  private constructor(snapshot: Snapshot, log: Logger, quarantine: Quarantine, pools: PoolStateRegistry) {
    this.pools = pools;
    this.#snapshot = snapshot;
    this.log = log;
    this.quarantine = quarantine;
    this.observer = new Observer(snapshot.loaded.config.observe, snapshot.loaded.file, log);
    this.shared = {
      quarantine,
      log,
      denyLog: new LogRateLimiter(snapshot.loaded.config.log.deny_log_per_second),
      observed: new ObservedSources(),
      counters: { quarantineDenied: 0, connectionLimitRefused: 0, proxyHeaderInvalid: 0 },
      observer: this.observer,
    };
    this.observer.bind(this);
  }

  /**
   * Compiles the config, starts demo backends and binds every VIP.
   * @param loaded - a validated config
   * @param log - process logger
   * @returns the running runtime
   * @throws ListenerError SEGLB_LISTENER_BIND when a VIP or demo backend cannot bind (every VIP is
   *   tried and each that cannot bind is named; whatever was opened is closed again first)
   */
  static async start(loaded: LoadedConfig, log: Logger): Promise<Runtime> {
    const quarantine = new Quarantine();
    const pools = new PoolStateRegistry(log);
    const snapshot = buildSnapshot(loaded, 1, null, pools);
    pools.commit(loaded);
    const rt = new Runtime(snapshot, log, quarantine, pools);
    rt.#releaseAfterLargeLoad(loaded); // before any VIP is open: the pause costs no traffic
    rt.#housekeeping = setInterval(() => rt.#tick(), 1000);
    rt.#housekeeping.unref();
    try {
      await rt.#syncDemoBackends();
      const failed: ListenerError[] = [];
      for (const [key, ctx] of snapshot.vips) {
        try {
          await rt.#open(key, ctx);
        } catch (err) {
          if (!(err instanceof ListenerError)) throw err;
          failed.push(err);
        }
      }
      throwBindFailures(failed);
    } catch (err) {
      await rt.stop(0);
      throw err;
    }
    return rt;
  }

  /**
   * After loading a config with large IP sets (at least LARGE_LOAD_PREFIXES prefixes), gives the
   * memory the parse and compile used back to the OS (see memory.ts); logs the pause at debug, or
   * once at info that node was started without --expose-gc.
   */
  #releaseAfterLargeLoad(loaded: LoadedConfig): void {
    // Prefixes as parsed: a union repeats its members' prefixes, so only its own CIDRs count.
    let prefixes = 0;
    for (const name of loaded.ipsets.keys()) {
      const set = loaded.config.ipsets[name];
      prefixes += set?.union?.length ? (set.cidrs?.length ?? 0) : ipsetSize(loaded.ipsets, name);
    }
    if (prefixes < LARGE_LOAD_PREFIXES) return;
    const pauseMs = releaseHeapMemory();
    if (pauseMs !== null) {
      this.log.debug({ prefixes, pauseMs }, 'heap memory released after a large config load');
    } else if (!this.#releaseHinted) {
      this.#releaseHinted = true;
      this.log.info(
        { prefixes },
        'node runs without --expose-gc: the memory of this large config load is kept for reuse, not returned (docs/deploy.md, Node flags)',
      );
    }
  }

  /** Once a second: report deny log lines that a flood suppressed, drop expired quarantine entries. */
  #tick(): void {
    const suppressed = this.shared.denyLog.flush(Date.now());
    if (suppressed > 0) this.log.info({ event: 'deny-suppressed', suppressed }, 'deny log lines suppressed');
    this.quarantine.sweep();
  }

  /**
   * Adds a quarantine entry and closes every open connection from a source it covers, on every
   * VIP (whatever the segment's `revoke` says: quarantine is the emergency brake).
   * @param cidr - CIDR or address, canonical
   * @param ttlMs - lifetime in ms (Infinity for none)
   * @param reason - for operators
   * @returns the entry and how many connections were closed
   * @throws NetError SEGLB_NET_INVALID_CIDR / SEGLB_NET_NONCANONICAL_CIDR, RangeError for a bad ttl
   */
  quarantineAdd(cidr: string, ttlMs: number, reason: string): { entry: QuarantineEntry; closed: number } {
    const entry = this.quarantine.add(cidr, ttlMs, reason);
    const closed = this.#closeQuarantined();
    this.log.warn({ cidr: entry.cidr, ttlMs, reason, closed }, 'quarantine entry added');
    return { entry, closed };
  }

  /**
   * Applies replicated quarantine changes in one rebuild, then closes open connections from every
   * source now covered (as quarantineAdd does).
   * @returns connections closed
   */
  quarantineApply(
    upserted: readonly { cidr: string; expiresAt: number; reason: string; addedAt?: number }[],
    removed: readonly string[],
  ): number {
    const skipped = this.quarantine.applyBatch(upserted, removed);
    if (skipped > 0) this.log.warn({ skipped }, 'replicated quarantine entries skipped as invalid');
    return upserted.length > 0 ? this.#closeQuarantined() : 0;
  }

  #closeQuarantined(): number {
    let closed = 0;
    for (const { listener } of this.#listeners.values()) {
      for (const socket of listener.active) {
        const conn = (socket as SeglbSocket).seglb;
        if (conn !== undefined && this.quarantine.match(conn.source) !== undefined) {
          socket.destroy();
          closed++;
        }
      }
    }
    return closed;
  }

  /** Removes a quarantine entry. @returns true when one was removed. */
  quarantineRemove(cidr: string): boolean {
    const removed = this.quarantine.remove(cidr);
    if (removed) this.log.info({ cidr }, 'quarantine entry removed');
    return removed;
  }

  /**
   * Sets a backend's administrative state in every segment using the pool; kept across reloads.
   * @param pool - pool name
   * @param backend - backend name or address
   * @returns false when the pool or backend does not exist
   */
  setBackendState(pool: string, backend: string, state: BackendAdminState): boolean {
    const cfg = this.#snapshot.loaded.config.pools[pool];
    const index = cfg?.backends.findIndex((b) => b.address === backend || b.name === backend) ?? -1;
    if (!cfg || index < 0) return false;
    const key = `${pool}\u0000${(cfg.backends[index] as { address: string }).address}`;
    if (state === 'ready') this.#backendStates.delete(key);
    else this.#backendStates.set(key, state);
    this.#applyBackendStates();
    this.log.info({ pool, backend, state }, 'backend state set');
    return true;
  }

  /** Backend states set at runtime, as `[pool, address, state]`. */
  backendStates(): [string, string, BackendAdminState][] {
    return [...this.#backendStates].map(([k, v]) => {
      const [pool, address] = k.split('\u0000') as [string, string];
      return [pool, address, v];
    });
  }

  #applyBackendStates(): void {
    for (const seg of this.#snapshot.segments.values()) {
      seg.pool.backends.forEach((b, id) => {
        const want = this.#backendStates.get(`${seg.pool.name}\u0000${b.address}`) ?? 'ready';
        if (b.adminState !== want) seg.pool.setAdminState(id, want);
      });
    }
  }

  /**
   * After a snapshot swap, closes open connections whose source the new policy refuses, per the
   * segment's `revoke`: immediate (all), after_request (TCP now; HTTP at its next request), never.
   */
  #revokeAfterSwap(): void {
    for (const { listener, ctx } of this.#listeners.values()) {
      const mode = ctx.segment.config.revoke;
      if (mode === 'never') continue;
      if (mode === 'after_request' && ctx.vip.protocol !== 'tcp') continue;
      for (const socket of listener.active) {
        const conn = (socket as SeglbSocket).seglb;
        if (conn === undefined || conn.ctx === ctx) continue;
        // Only ask (no counting): an allowed HTTP connection is judged and counted at its next request.
        if (decideConnection(ctx, conn.source, this.shared, false) === null) {
          this.log.info(
            { segment: ctx.segment.name, source: conn.source, revoke: mode },
            'connection revoked by policy change',
          );
          socket.destroy();
        }
      }
    }
  }

  /** The current snapshot. */
  get snapshot(): Snapshot {
    return this.#snapshot;
  }

  /** Every bound VIP with its actual address. */
  boundVips(): BoundVip[] {
    return [...this.#listeners.values()].map((l) => ({
      segment: l.ctx.segment.name,
      protocol: l.ctx.vip.protocol,
      listen: l.ctx.vip.listen,
      address: l.bound.address,
      port: l.bound.port,
    }));
  }

  /**
   * Applies a new config without dropping connections: listeners whose bind address stays are kept
   * (they get the new context; open connections finish under the old one), new ones are opened
   * before removed ones are closed, and keep-alive connections to backends that remain are reused.
   * @param loaded - a validated config (validation failures never reach here: the old config stays)
   * @throws ListenerError SEGLB_LISTENER_BIND when a new VIP cannot bind (every such VIP named in the
   *   message, `; `-separated); the old snapshot then stays
   */
  async reload(loaded: LoadedConfig): Promise<Snapshot> {
    const old = this.#snapshot;
    const next = buildSnapshot(loaded, old.version + 1, old, this.pools);
    const opened: string[] = [];
    /** VIPs closed to be re-bound with changed options: re-opened as they were if the reload fails. */
    const replaced: [string, VipContext][] = [];
    try {
      await this.#syncDemoBackends(loaded);
      // Every VIP is tried, so one failed reload names every address that cannot bind.
      const failed: ListenerError[] = [];
      for (const [key, ctx] of next.vips) {
        const existing = this.#listeners.get(key);
        if (existing && sameListener(existing.ctx, ctx)) continue;
        if (existing) {
          replaced.push([key, existing.ctx]);
          await this.#closeListener(key, 0);
        }
        try {
          await this.#open(key, ctx);
          opened.push(key);
        } catch (err) {
          if (!(err instanceof ListenerError)) throw err;
          failed.push(err);
        }
      }
      throwBindFailures(failed);
    } catch (err) {
      for (const key of opened) await this.#closeListener(key, 0);
      // The running configuration stays, VIPs included: re-bind what was closed for the change.
      for (const [key, ctx] of replaced) {
        try {
          await this.#open(key, ctx);
        } catch (reopenErr) {
          this.log.error(
            { code: 'SEGLB_LISTENER_BIND', vip: ctx.vip.listen, err: (reopenErr as Error).message },
            'VIP could not be re-bound after a failed reload; it stays closed until the next reload',
          );
        }
      }
      closeUnreused(next, old);
      this.pools.commit(old.loaded); // forget pool and backend states only the failed config had
      throw err;
    }
    for (const [key, entry] of this.#listeners) {
      const ctx = next.vips.get(key);
      if (ctx) {
        entry.listener.setContext(ctx);
        entry.ctx = ctx;
      }
    }
    this.#snapshot = next;
    this.pools.commit(loaded);
    this.observer.configure(loaded.config.observe);
    this.observer.swapped();
    this.#applyBackendStates();
    this.#revokeAfterSwap();
    const grace = loaded.config.timeouts.shutdown_grace_ms;
    const removed = [...this.#listeners.keys()].filter((k) => !next.vips.has(k));
    await Promise.all(removed.map((k) => this.#closeListener(k, grace)));
    closeUnreused(old, next);
    await this.#syncDemoBackends(loaded);
    this.#releaseAfterLargeLoad(loaded);
    this.log.info(
      { version: next.version, segments: next.segments.size, vips: next.vips.size },
      'configuration applied',
    );
    return next;
  }

  /**
   * Stops accepting everywhere, lets in-flight requests and connections finish for up to
   * `graceMs`, then closes everything (backend pools, demo backends).
   */
  async stop(graceMs: number): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    clearInterval(this.#housekeeping);
    this.pools.close();
    this.observer.close();
    // Every listener stops accepting synchronously inside #closeListener; only then is it said.
    const closing = Promise.all([...this.#listeners.keys()].map((k) => this.#closeListener(k, graceMs)));
    this.log.info({ graceMs }, 'no longer accepting connections; draining');
    await closing;
    await Promise.all([...this.#snapshot.segments.values()].map((s) => s.pool.close().catch(() => {})));
    await Promise.all(
      [...this.#demo.values()].map(
        (s) =>
          new Promise<void>((r) => {
            s.closeAllConnections();
            s.close(() => r());
          }),
      ),
    );
    this.#demo.clear();
  }

  async #open(key: string, ctx: VipContext): Promise<void> {
    const listener: Listener =
      ctx.vip.protocol === 'tcp'
        ? new TcpVip(ctx, this.shared)
        : new HttpVip(ctx, this.shared, ctx.tls ?? undefined);
    let bound: AddressInfo;
    try {
      bound = await listener.listen();
    } catch (err) {
      throw new ListenerError(
        'SEGLB_LISTENER_BIND',
        `cannot listen on ${ctx.vip.listen} (segment ${ctx.segment.name}): ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        { cause: err },
      );
    }
    this.#listeners.set(key, { listener, ctx, bound });
    this.log.info(
      { segment: ctx.segment.name, protocol: ctx.vip.protocol, address: bound.address, port: bound.port },
      'VIP listening',
    );
  }

  async #closeListener(key: string, graceMs: number): Promise<void> {
    const entry = this.#listeners.get(key);
    if (!entry) return;
    this.#listeners.delete(key);
    await entry.listener.close(graceMs);
  }

  /** Starts demo backends the config wants and stops those it no longer does. */
  async #syncDemoBackends(loaded: LoadedConfig = this.#snapshot.loaded): Promise<void> {
    const wanted = new Map<string, string>();
    for (const pool of Object.values(loaded.config.pools)) {
      if (!pool.demo) continue;
      for (const b of pool.backends) wanted.set(b.address, b.name ?? b.address);
    }
    for (const [address, server] of this.#demo) {
      if (!wanted.has(address) && this.#snapshot.loaded === loaded) {
        server.close();
        this.#demo.delete(address);
      }
    }
    for (const [address, name] of wanted) {
      if (this.#demo.has(address)) continue;
      try {
        this.#demo.set(address, await startDemoBackend(name, parseEndpoint(address)));
      } catch (err) {
        throw new ListenerError(
          'SEGLB_LISTENER_BIND',
          `cannot start demo backend on ${address}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
          { cause: err },
        );
      }
      this.log.info({ backend: name, address }, 'demo backend listening');
    }
  }
}

/** The key under which a VIP's listener is kept across reloads: its bind identity. */
function vipKey(segment: string, index: number, vip: VipConfig): string {
  const ep = parseEndpoint(vip.listen, true);
  // Port 0 binds a new ephemeral port each time, so such VIPs are keyed by their place instead.
  return ep.port === 0 ? `${segment}#${index}|${vip.listen}` : `${vip.listen}|${vip.ipv6_only}`;
}

/**
 * A listener can be kept across a reload when its VIP config (protocol, PROXY trust, TLS settings)
 * is unchanged; otherwise it is closed and opened again.
 */
function sameListener(a: VipContext, b: VipContext): boolean {
  // Certificate contents may change (HttpVip.setContext swaps them in place); file paths,
  // protocol and the rest of the VIP may not.
  return JSON.stringify(a.vip) === JSON.stringify(b.vip);
}

function buildSnapshot(
  loaded: LoadedConfig,
  version: number,
  previous: Snapshot | null,
  pools: PoolStateRegistry,
): Snapshot {
  const cfg = loaded.config;
  const segments = new Map<string, SegmentRuntime>();
  const vips = new Map<string, VipContext>();
  for (const [name, seg] of Object.entries(cfg.segments)) {
    const prev = previous?.segments.get(name);
    const subnets = loaded.backendSubnets.get(name) ?? [];
    const backendSubnets = new SourceSet(subnets);
    const poolConfig = cfg.pools[seg.pool];
    if (!poolConfig) throw new Error(`unreachable: pool ${seg.pool} missing after validation`);
    const material = loaded.pools.get(seg.pool) ?? null;
    // Warm backend connections are kept unless what they were opened with changed (TLS included).
    const reusable =
      prev !== undefined &&
      prev.pool.name === seg.pool &&
      JSON.stringify([
        prev.config.backend_subnets,
        previous?.loaded.config.timeouts,
        previous?.loaded.config.limits,
        prev.pool.config.tls,
        previous?.loaded.pools.get(seg.pool)?.ca,
      ]) === JSON.stringify([seg.backend_subnets, cfg.timeouts, cfg.limits, poolConfig.tls, material?.ca]);
    const counters = prev?.counters ?? newSegmentCounters();
    const runtime: SegmentRuntime = {
      name,
      config: seg,
      policy: compileSegmentPolicy(name, seg, loaded.ipsets),
      pool: new BackendPool(seg.pool, poolConfig, {
        timeouts: cfg.timeouts,
        limits: cfg.limits,
        subnets: backendSubnets,
        observeOutbound: () => {},
        state: pools.prepare(seg.pool, poolConfig),
        material,
        reuse: reusable ? prev.pool.dispatchersByAddress() : undefined,
      }),
      xffTrusted:
        seg.trusted_proxies.length > 0
          ? new SourceSet(expandSources(seg.trusted_proxies, loaded.ipsets))
          : null,
      forwarded: seg.forwarded_headers,
      backendSubnets,
      counters,
    };
    segments.set(name, runtime);
    seg.vips.forEach((vip, i) => {
      const tlsKey = `${name}#${i}`;
      vips.set(vipKey(name, i, vip), {
        segment: runtime,
        vip,
        proxyTrusted: vip.proxy_protocol
          ? new SourceSet(expandSources(vip.proxy_protocol.trusted, loaded.ipsets))
          : null,
        timeouts: cfg.timeouts,
        limits: cfg.limits,
        tls: loaded.tls.get(tlsKey) ?? null,
      });
    });
  }
  const hash = policyHash(loaded);
  return { version, hash, loaded, segments, vips };
}

/**
 * Throws the VIPs that could not bind as one error: the only one as it is, several as one
 * SEGLB_LISTENER_BIND whose message lists each (`; `-separated). Does nothing for none.
 */
function throwBindFailures(failed: readonly ListenerError[]): void {
  if (failed.length === 1) throw failed[0];
  if (failed.length > 1) {
    throw new ListenerError('SEGLB_LISTENER_BIND', failed.map((e) => e.message).join('; '), {
      cause: failed[0],
    });
  }
}

/** Closes the undici pools of `from` that `to` did not take over. */
function closeUnreused(from: Snapshot, to: Snapshot): void {
  const kept = new Set<UndiciPool>();
  for (const s of to.segments.values()) for (const d of s.pool.dispatchersByAddress().values()) kept.add(d);
  for (const s of from.segments.values()) {
    for (const d of s.pool.dispatchersByAddress().values()) if (!kept.has(d)) d.close().catch(() => {});
  }
}

/**
 * The policy hash cluster peers compare: what decides verdicts (rules, modes, revoke, backend
 * subnets, trusted proxies, and IP sets as resolved CIDRs, so a file's contents count), not
 * node-local settings such as VIP or listener addresses.
 * @returns 16 hex digits of SHA-256
 */
export function policyHash(loaded: LoadedConfig): string {
  const segments = Object.entries(loaded.config.segments)
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([name, s]) => [name, s.mode, s.revoke, s.allow, s.deny, s.backend_subnets, s.trusted_proxies]);
  const h = createHash('sha256').update(JSON.stringify({ segments }));
  // IP sets as resolved prefixes in a canonical order (packed words, no strings: 246k prefixes
  // would otherwise mean 246k decoded objects and texts per reload).
  for (const name of [...loaded.ipsets.keys()].sort()) {
    h.update(`\0ipset ${name} ${ipsetSize(loaded.ipsets, name)}\0`);
    const packed = loaded.ipsets;
    if (packed instanceof PackedCidrMap) packed.digestInto(name, (bytes) => h.update(bytes));
    else
      h.update(
        (packed.get(name) ?? [])
          .map((c) => c.text)
          .sort()
          .join(','),
      );
  }
  return h.digest('hex').slice(0, 16);
}
