// The observer of one runtime: what the data path calls for every connection verdict, connection
// close and HTTP request. It bumps plain-number counters (read by prom-client at scrape time), writes
// the flow record into the ring (and the flow log), feeds the detectors, and turns detections into
// alerts and quarantine actions off the data path (setImmediate), so a verdict never waits on them.

import { channel } from 'node:diagnostics_channel';
import { dirname, resolve } from 'node:path';
import type { ObserveConfig } from '../config/types.ts';
import type { ConnectionState } from '../listeners/accept.ts';
import type { SegmentRuntime, VipContext } from '../listeners/context.ts';
import { type SourceSet, VERDICT_DENY } from '../policy/index.ts';
import { type SourceGroupCounts, SourceGroups } from './aggregates.ts';
import { AnomalyDetectors, type Detection, type DetectorSegment } from './detectors.ts';
import { type AlertEvent, EventHub } from './events.ts';
import { FlowLog } from './flow-log.ts';
import {
  FLOW_ALLOW,
  FLOW_AUDIT,
  FLOW_CONN,
  FLOW_DENY,
  FLOW_KIND_NAMES,
  FLOW_REQ,
  FLOW_VERDICT_NAMES,
  type FlowKind,
  FlowRing,
  type FlowVerdict,
  flowRecord,
} from './flow-ring.ts';
import { LatencyHistogram } from './histogram.ts';
import type { Logger } from './log.ts';
import { WebhookSender } from './webhook.ts';

/** Rule ids besides a policy's own (>= 0) and DEFAULT_DENY_RULE (-1). */
export const RULE_QUARANTINE = -2;
export const RULE_TRUSTED_PROXY = -3;
/** Offset of rule id -> counter slot: slot 0 trusted-proxy, 1 quarantine, 2 default-deny, 3.. rules. */
const RULE_BASE = 3;
const SPECIAL_RULE_NAMES = ['trusted-proxy', 'quarantine', 'default-deny'];

/** Published for every flow record, only when someone subscribed (undici diagnostics style). */
export const flowChannel = channel('seglb:flow');

/** What the observer reads of the runtime (metrics, exemptions, overview). */
export interface ObservedRuntime {
  readonly snapshot: {
    readonly version: number;
    readonly hash: string;
    readonly segments: ReadonlyMap<string, SegmentRuntime>;
    readonly vips: ReadonlyMap<string, VipContext>;
  };
  readonly quarantine: { readonly size: number };
  readonly shared: {
    readonly counters: {
      readonly quarantineDenied: number;
      readonly connectionLimitRefused: number;
      readonly proxyHeaderInvalid: number;
    };
  };
  quarantineAdd(cidr: string, ttlMs: number, reason: string): unknown;
}

/** Adds a quarantine entry on behalf of `actor` (`detector:NAME`); PolicyControl's in production. */
export type QuarantineHandler = (actor: string, cidr: string, ttlMs: number, reason: string) => void;

/** A cluster peer as the metrics and the dashboard show it (set by the cluster module). */
export interface ClusterPeerView {
  readonly name: string;
  readonly address: string;
  /** up, down, connecting, ... */
  readonly state: string;
  /** Replication lag in ms, or null when unknown. */
  readonly syncLagMs: number | null;
}

/** Totals of one segment (persist across reloads; keyed by segment name). */
export class SegmentStats {
  readonly name: string;
  readonly det: DetectorSegment;
  readonly groups: SourceGroups;
  /** allow/deny/audit flows (connections + requests) in the current interval. */
  readonly interval = new Float64Array(3);
  /** Per second, over the last complete interval. */
  readonly rates = new Float64Array(3);
  /** Totals since start (connections + requests), by verdict. */
  readonly totals = new Float64Array(3);
  readonly requestTime = new LatencyHistogram();
  readonly backendTime = new LatencyHistogram();
  readonly overheadTime = new LatencyHistogram();

  constructor(name: string, det: DetectorSegment, maxGroups: number) {
    this.name = name;
    this.det = det;
    this.groups = new SourceGroups(maxGroups);
  }
}

/** Totals of one VIP of a segment (persist across reloads). */
export class VipTotals {
  readonly segment: string;
  readonly vip: string;
  /** Client bytes, counted when a connection closes. */
  bytesIn = 0;
  bytesOut = 0;
  /** HTTP responses by status class: index 1..5 = 1xx..5xx, 0 = none sent. */
  readonly statusClasses = new Float64Array(6);
  constructor(segment: string, vip: string) {
    this.segment = segment;
    this.vip = vip;
  }
}

/**
 * Per VIP context (one snapshot's VIP): counters by kind x verdict x rule slot. Rule ids are the
 * policy's, so a new snapshot gets a new site; metrics fold them by rule name (CounterFold).
 */
export class VipSite {
  readonly ctx: VipContext;
  readonly seg: SegmentStats;
  readonly totals: VipTotals;
  /** Rule name per slot (see RULE_BASE). */
  readonly ruleNames: readonly string[];
  readonly width: number;
  /** [kind][verdict][slot] flattened. */
  readonly counts: Float64Array;
  /** When the site's snapshot was replaced (ms), 0 while current. */
  retiredAt = 0;

  constructor(ctx: VipContext, seg: SegmentStats, totals: VipTotals) {
    this.ctx = ctx;
    this.seg = seg;
    this.totals = totals;
    this.ruleNames = [...SPECIAL_RULE_NAMES, ...ctx.segment.policy.rules.map((r) => r.name)];
    this.width = this.ruleNames.length;
    this.counts = new Float64Array(2 * 3 * this.width);
  }

  /** Counter index of (kind, verdict, rule id). */
  index(kind: FlowKind, verdict: FlowVerdict, rule: number): number {
    return (kind * 3 + verdict) * this.width + rule + RULE_BASE;
  }

  ruleName(rule: number): string {
    return this.ruleNames[rule + RULE_BASE] ?? 'default-deny';
  }
}

/** How long a replaced snapshot's counters are still read (late connections on the old policy). */
const RETIRED_SITE_MS = 10 * 60_000;

/**
 * The observer of one runtime. Create with the `observe:` config, `bind()` the runtime, call
 * `swapped()` after every snapshot swap and `close()` on stop.
 */
export class Observer {
  #cfg: ObserveConfig;
  readonly #baseDir: string;
  readonly #log: Logger;
  #ring: FlowRing;
  #flowLog: FlowLog | null = null;
  #webhook: WebhookSender | null = null;
  readonly events: EventHub;
  readonly detectors: AnomalyDetectors;
  readonly #sites = new Map<VipContext, VipSite>();
  readonly #segments = new Map<string, SegmentStats>();
  readonly #vipTotals = new Map<string, VipTotals>();
  #flowsOn: boolean;
  #runtime: ObservedRuntime | null = null;
  #exempt: SourceSet[] = [];
  #pending: Detection[] = [];
  #scheduled = false;
  #timer: NodeJS.Timeout;
  #lastTick = Date.now();
  /** Alerts raised, by `detector NUL segment NUL action`. */
  readonly alertCounts = new Map<string, number>();
  /** Quarantine actions that failed (bad source, handler error). */
  quarantineFailures = 0;
  /** Adds quarantine entries for detectors; defaults to the runtime's (no persistence). */
  quarantineHandler: QuarantineHandler | null = null;
  /** Cluster view, set by the cluster module when it runs; null on a single node. */
  clusterPeers: (() => readonly ClusterPeerView[]) | null = null;

  /**
   * @param cfg - the `observe:` section
   * @param configFile - absolute path of the config file (relative flow_log paths resolve against it)
   */
  constructor(cfg: ObserveConfig, configFile: string, log: Logger) {
    this.#cfg = cfg;
    this.#baseDir = dirname(configFile);
    this.#log = log.child({ component: 'observe' });
    this.#flowsOn = cfg.flows.enabled;
    this.#ring = new FlowRing(cfg.flows.enabled ? cfg.flows.ring_size : 0);
    this.events = new EventHub(cfg.events.ring_size);
    this.detectors = new AnomalyDetectors(cfg.detectors, (d) => this.#detected(d));
    this.#applyOutputs(cfg, null);
    this.#timer = setInterval(() => this.tick(), cfg.detectors.interval_ms);
    this.#timer.unref();
  }

  get config(): ObserveConfig {
    return this.#cfg;
  }

  get ring(): FlowRing {
    return this.#ring;
  }

  get flowLog(): FlowLog | null {
    return this.#flowLog;
  }

  get webhook(): WebhookSender | null {
    return this.#webhook;
  }

  /** The runtime whose snapshot the metrics and exemptions read. */
  bind(runtime: ObservedRuntime): void {
    this.#runtime = runtime;
    this.swapped();
  }

  get runtime(): ObservedRuntime | null {
    return this.#runtime;
  }

  /**
   * Applies a new `observe:` section (reload). The ring is rebuilt only when its size changes;
   * baselines, totals and aggregates are kept.
   */
  configure(cfg: ObserveConfig): void {
    const old = this.#cfg;
    this.#cfg = cfg;
    this.#flowsOn = cfg.flows.enabled;
    const size = cfg.flows.enabled ? cfg.flows.ring_size : 0;
    if (size !== this.#ring.capacity) this.#ring = new FlowRing(size);
    this.detectors.configure(cfg.detectors);
    this.#applyOutputs(cfg, old);
    if (cfg.detectors.interval_ms !== old.detectors.interval_ms) {
      clearInterval(this.#timer);
      this.#timer = setInterval(() => this.tick(), cfg.detectors.interval_ms);
      this.#timer.unref();
    }
  }

  /** After a snapshot swap: retire the old contexts' sites, refresh the exempt sources. */
  swapped(): void {
    const rt = this.#runtime;
    if (rt === null) return;
    const current = new Set(rt.snapshot.vips.values());
    const now = Date.now();
    for (const [ctx, site] of this.#sites) {
      if (current.has(ctx)) continue;
      if (site.retiredAt === 0) site.retiredAt = now;
    }
    // Bounded across many reloads; a scrape within RETIRED_SITE_MS has folded their counts.
    this.pruneSites(now);
    const exempt: SourceSet[] = [];
    for (const seg of rt.snapshot.segments.values()) if (seg.xffTrusted) exempt.push(seg.xffTrusted);
    for (const ctx of rt.snapshot.vips.values()) if (ctx.proxyTrusted) exempt.push(ctx.proxyTrusted);
    this.#exempt = exempt;
  }

  // ---- data path -------------------------------------------------------------------------------

  /**
   * A connection verdict at accept (or at the next request after a snapshot swap).
   * @param verdict - FLOW_ALLOW, FLOW_DENY (refused) or FLOW_AUDIT (would be denied, let through)
   * @param rule - deciding rule id, DEFAULT_DENY_RULE, RULE_QUARANTINE or RULE_TRUSTED_PROXY
   * @param firstSeen - the source is new on this segment (ObservedSources did not remember it)
   */
  connection(ctx: VipContext, source: string, verdict: FlowVerdict, rule: number, firstSeen: boolean): void {
    const site = this.#sites.get(ctx) ?? this.#addSite(ctx);
    const i = site.index(FLOW_CONN, verdict, rule);
    site.counts[i] = (site.counts[i] as number) + 1;
    const seg = site.seg;
    seg.interval[verdict] = (seg.interval[verdict] as number) + 1;
    if (rule !== RULE_QUARANTINE) {
      // A quarantined source is already handled: it would only re-trigger the detectors.
      const det = this.detectors;
      det.connection(seg.det, source);
      if (verdict !== FLOW_ALLOW) det.denied(seg.det, source);
      if (firstSeen) det.newSource(seg.det, source);
    }
    if (verdict === FLOW_DENY && this.#flowsOn) {
      this.#flow(FLOW_CONN, site, source, verdict, site.ruleName(rule), '', 0, 0, 0, 0);
    }
  }

  /**
   * An accepted connection closed.
   * @param backend - the backend of a TCP connection, '' for HTTP (requests have their own records)
   */
  connectionClosed(
    state: ConnectionState,
    backend: string,
    bytesIn: number,
    bytesOut: number,
    durationMs: number,
  ): void {
    const ctx = state.ctx;
    const site = this.#sites.get(ctx) ?? this.#addSite(ctx);
    const totals = site.totals;
    totals.bytesIn += bytesIn;
    totals.bytesOut += bytesOut;
    if (!this.#flowsOn) return;
    const verdict = state.record.verdict === VERDICT_DENY ? FLOW_AUDIT : FLOW_ALLOW;
    const rule = state.viaTrustedProxy ? RULE_TRUSTED_PROXY : state.record.rule;
    this.#flow(
      FLOW_CONN,
      site,
      state.source,
      verdict,
      site.ruleName(rule),
      backend,
      0,
      bytesIn,
      bytesOut,
      durationMs,
    );
  }

  /**
   * An HTTP request ended (answered, refused or abandoned).
   * @param status - status sent to the client, 0 when none was
   * @param totalMs - request received to response end
   * @param backendMs - dispatch of the last attempt to the backend's response end, or -1 when no
   *   backend answered
   */
  request(
    ctx: VipContext,
    source: string,
    verdict: FlowVerdict,
    rule: number,
    backend: string,
    status: number,
    bytesIn: number,
    bytesOut: number,
    totalMs: number,
    backendMs: number,
  ): void {
    const site = this.#sites.get(ctx) ?? this.#addSite(ctx);
    const i = site.index(FLOW_REQ, verdict, rule);
    site.counts[i] = (site.counts[i] as number) + 1;
    const seg = site.seg;
    seg.interval[verdict] = (seg.interval[verdict] as number) + 1;
    if (verdict !== FLOW_ALLOW && rule !== RULE_QUARANTINE) this.detectors.denied(seg.det, source);
    const sc = site.totals.statusClasses;
    const cls = status >= 100 && status < 600 ? (status / 100) | 0 : 0;
    sc[cls] = (sc[cls] as number) + 1;
    if (status !== 0) {
      seg.requestTime.observeMs(totalMs);
      if (backendMs >= 0) {
        seg.backendTime.observeMs(backendMs);
        seg.overheadTime.observeMs(totalMs - backendMs);
      }
    }
    if (this.#flowsOn) {
      this.#flow(
        FLOW_REQ,
        site,
        source,
        verdict,
        site.ruleName(rule),
        backend,
        status,
        bytesIn,
        bytesOut,
        totalMs,
      );
    }
  }

  #flow(
    kind: FlowKind,
    site: VipSite,
    source: string,
    verdict: FlowVerdict,
    rule: string,
    backend: string,
    status: number,
    bytesIn: number,
    bytesOut: number,
    durationMs: number,
  ): void {
    const now = Date.now();
    const seg = site.seg;
    const vip = site.ctx.vip.listen;
    const seq = this.#ring.push(
      now,
      kind,
      seg.name,
      vip,
      source,
      verdict,
      rule,
      backend,
      status,
      bytesIn,
      bytesOut,
      durationMs,
    );
    seg.groups.count(source, verdict, now);
    const log = this.#flowLog;
    const watched = verdict !== FLOW_ALLOW && this.events.watched;
    if (log === null && !watched && !flowChannel.hasSubscribers) return;
    const record = flowRecord(
      seq,
      now,
      kind,
      seg.name,
      vip,
      source,
      verdict,
      rule,
      backend,
      status,
      bytesIn,
      bytesOut,
      durationMs,
    );
    const json = log !== null || watched ? JSON.stringify(record) : '';
    if (log !== null) log.write(json);
    if (watched) this.events.publish('flow', json, seq);
    if (flowChannel.hasSubscribers) flowChannel.publish(record);
  }

  #addSite(ctx: VipContext): VipSite {
    const name = ctx.segment.name;
    const seg = this.segmentStats(name);
    const key = `${name}\u0000${ctx.vip.listen}`;
    let totals = this.#vipTotals.get(key);
    if (totals === undefined) {
      totals = new VipTotals(name, ctx.vip.listen);
      this.#vipTotals.set(key, totals);
    }
    const site = new VipSite(ctx, seg, totals);
    this.#sites.set(ctx, site);
    return site;
  }

  // ---- reading -------------------------------------------------------------------------------

  /** A segment's persistent stats (created on first use). */
  segmentStats(name: string): SegmentStats {
    let s = this.#segments.get(name);
    if (s === undefined) {
      s = new SegmentStats(name, this.detectors.segment(name), this.#cfg.flows.max_groups);
      this.#segments.set(name, s);
    }
    return s;
  }

  /** Every segment's stats seen so far. */
  allSegmentStats(): IterableIterator<SegmentStats> {
    return this.#segments.values();
  }

  /** Every VIP site (current and recently retired). */
  sites(): IterableIterator<VipSite> {
    return this.#sites.values();
  }

  /** Every VIP's totals. */
  vipTotals(): IterableIterator<VipTotals> {
    return this.#vipTotals.values();
  }

  /** Source-group aggregates of one segment (or all), busiest first. */
  aggregates(segment?: string): { segment: string; groups: SourceGroupCounts[] }[] {
    const out: { segment: string; groups: SourceGroupCounts[] }[] = [];
    for (const s of this.#segments.values()) {
      if (segment === undefined || s.name === segment) out.push({ segment: s.name, groups: s.groups.list() });
    }
    return out;
  }

  /** Drops sites retired longer than RETIRED_SITE_MS (call after their counters were read). */
  pruneSites(now = Date.now()): void {
    for (const [ctx, site] of this.#sites)
      if (site.retiredAt !== 0 && now - site.retiredAt > RETIRED_SITE_MS) this.#sites.delete(ctx);
  }

  // ---- interval, detections, alerts --------------------------------------------------------

  /** Ends an interval: live rates, detectors, the stats event. Runs on a timer; tests may call it. */
  tick(): void {
    const now = Date.now();
    const seconds = Math.max(0.001, (now - this.#lastTick) / 1000);
    this.#lastTick = now;
    for (const s of this.#segments.values()) {
      for (let v = 0; v < 3; v++) {
        const n = s.interval[v] as number;
        s.rates[v] = n / seconds;
        s.totals[v] = (s.totals[v] as number) + n;
        s.interval[v] = 0;
      }
    }
    this.detectors.tick();
    if (this.events.watched) this.events.publish('stats', JSON.stringify(this.stats(now)));
  }

  /** Live rates per segment (the `stats` event). */
  stats(now = Date.now()) {
    return {
      time: new Date(now).toISOString(),
      intervalMs: this.#cfg.detectors.interval_ms,
      quarantineEntries: this.#runtime?.quarantine.size ?? 0,
      segments: this.#currentSegmentStats().map((s) => ({
        name: s.name,
        rates: { allow: round(s.rates[0]), deny: round(s.rates[1]), audit: round(s.rates[2]) },
        totals: { allow: s.totals[0], deny: s.totals[1], audit: s.totals[2] },
      })),
    };
  }

  /** Stats of the running snapshot's segments (all segments when not bound). */
  #currentSegmentStats(): SegmentStats[] {
    const rt = this.#runtime;
    if (rt === null) return [...this.#segments.values()];
    return [...rt.snapshot.segments.keys()].map((name) => this.segmentStats(name));
  }

  #detected(d: Detection): void {
    this.#pending.push(d);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      const batch = this.#pending;
      this.#pending = [];
      for (const one of batch) this.#raise(one);
    });
  }

  /** Turns a detection into an alert: quarantine (unless dry run), log, metric, event, webhook. */
  #raise(d: Detection): void {
    const c = this.#cfg.detectors[d.detector];
    const action = c.action;
    const dryRun = c.dry_run;
    const targets = action === 'quarantine' ? d.sources.filter((s) => !this.#isExempt(s)) : [];
    const quarantined: string[] = [];
    if (action === 'quarantine' && !dryRun) {
      const ttl = this.#cfg.detectors.quarantine_ttl_ms;
      for (const source of targets) {
        try {
          const reason = `detector ${d.detector}: ${d.message}`.slice(0, 300);
          if (this.quarantineHandler) this.quarantineHandler(`detector:${d.detector}`, source, ttl, reason);
          else this.#runtime?.quarantineAdd(source, ttl, reason);
          quarantined.push(source);
        } catch (err) {
          this.quarantineFailures++;
          this.#log.error({ detector: d.detector, source, err: String(err) }, 'detector quarantine failed');
        }
      }
    }
    const event: AlertEvent = {
      id: this.events.nextId(),
      time: new Date().toISOString(),
      type: 'alert',
      detector: d.detector,
      segment: d.segment,
      source: d.source,
      value: d.value,
      threshold: d.threshold,
      baseline: d.baseline,
      action,
      dryRun,
      quarantine: dryRun ? targets : quarantined,
      message: d.message,
    };
    const key = `${d.detector}\u0000${d.segment ?? ''}\u0000${action}`;
    this.alertCounts.set(key, (this.alertCounts.get(key) ?? 0) + 1);
    this.#log.warn(
      {
        event: 'alert',
        detector: d.detector,
        segment: d.segment,
        source: d.source,
        value: d.value,
        threshold: d.threshold,
        action,
        dryRun,
        quarantine: event.quarantine,
      },
      dryRun && action === 'quarantine' ? `${d.message} (dry run: would quarantine)` : d.message,
    );
    this.events.alert(event);
    if (this.#webhook) void this.#webhook.post(JSON.stringify(event));
  }

  #isExempt(source: string): boolean {
    for (const set of this.#exempt) if (set.has(source)) return true;
    return false;
  }

  #applyOutputs(cfg: ObserveConfig, old: ObserveConfig | null): void {
    const want = cfg.flows.enabled && cfg.flow_log ? resolve(this.#baseDir, cfg.flow_log.file) : null;
    const same =
      old !== null &&
      this.#flowLog !== null &&
      want === this.#flowLog.file &&
      JSON.stringify(old.flow_log) === JSON.stringify(cfg.flow_log);
    if (!same) {
      this.#flowLog?.close();
      this.#flowLog =
        want !== null && cfg.flow_log
          ? new FlowLog({ file: want, maxBytes: cfg.flow_log.max_bytes, keep: cfg.flow_log.keep }, this.#log)
          : null;
    }
    this.#webhook = cfg.webhook
      ? new WebhookSender(
          { url: cfg.webhook.url, timeoutMs: cfg.webhook.timeout_ms, maxInFlight: cfg.webhook.max_in_flight },
          this.#log,
        )
      : null;
  }

  /** Stops the timer and flushes the flow log. */
  close(): void {
    clearInterval(this.#timer);
    this.#flowLog?.close();
    this.#flowLog = null;
  }
}

function round(x: number | undefined): number {
  return Math.round((x ?? 0) * 100) / 100;
}

export { FLOW_ALLOW, FLOW_AUDIT, FLOW_DENY, FLOW_KIND_NAMES, FLOW_VERDICT_NAMES };
