// The Prometheus metrics of one runtime, in a prom-client Registry whose metrics read seglb's
// plain-number counters in collect() at scrape time (prom-client lib/metric.js): the data path
// never calls labels().inc(). Counters that live on a snapshot are folded (CounterFold) so they stay
// monotonic across reloads. Labels are bounded by the config (segments, VIPs, rules, pools,
// backends, detectors); no source address is ever a label.

import { Counter, Gauge, Registry } from 'prom-client';
import type { BackendPool } from '../pools/index.ts';
import { CounterFold } from './counter-fold.ts';
import { DETECTOR_NAMES } from './detectors.ts';
import { FLOW_KIND_NAMES, FLOW_VERDICT_NAMES } from './flow-ring.ts';
import { LATENCY_BUCKETS_SECONDS, type LatencyHistogram } from './histogram.ts';
import type { Observer, SegmentStats } from './observer.ts';

type Labels = Record<string, string>;

/** A pool's optional status() (added by the pools work); every field is read defensively. */
interface PoolStatusLike {
  readonly queueDepth?: number;
  readonly queued?: number;
  readonly backends?: readonly {
    readonly name?: string;
    readonly address?: string;
    readonly healthy?: boolean;
    readonly health?: string;
    readonly ejected?: boolean;
    readonly ejectedUntil?: number | null;
    readonly ejections?: number;
  }[];
}

/** A histogram read from LatencyHistogram objects at scrape time (prom-client custom metric). */
class CollectedHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #read: () => Iterable<[Labels, LatencyHistogram]>;

  constructor(name: string, help: string, read: () => Iterable<[Labels, LatencyHistogram]>) {
    this.name = name;
    this.help = help;
    this.#read = read;
  }

  get() {
    const values: { value: number; labels: Labels; metricName: string }[] = [];
    for (const [labels, h] of this.#read()) {
      const cumulative = h.cumulative();
      LATENCY_BUCKETS_SECONDS.forEach((le, i) => {
        values.push({
          value: cumulative[i] as number,
          labels: { ...labels, le: String(le) },
          metricName: `${this.name}_bucket`,
        });
      });
      values.push({ value: h.count, labels: { ...labels, le: '+Inf' }, metricName: `${this.name}_bucket` });
      values.push({ value: h.sum, labels, metricName: `${this.name}_sum` });
      values.push({ value: h.count, labels, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

/**
 * Builds the registry. Scraping it (`registry.metrics()`) reads the observer and the runtime.
 * @param observer - the runtime's observer (bound to its runtime)
 * @param version - seglb's version, for seglb_build_info
 */
export function buildMetricsRegistry(observer: Observer, version: string): Registry {
  const registry = new Registry();
  const registers = [registry];
  const fold = new CounterFold();
  const ejections = new Map<string, number>();
  const rt = () => observer.runtime;

  /** A counter whose values come from `read` (label values + running total) at scrape time. */
  const counter = (
    name: string,
    help: string,
    labelNames: readonly string[],
    read: () => Iterable<[Labels, number]>,
  ) =>
    new Counter({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const [labels, value] of read()) this.inc(labels, value);
      },
    });
  const gauge = (
    name: string,
    help: string,
    labelNames: readonly string[],
    read: () => Iterable<[Labels, number]>,
  ) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const [labels, value] of read()) this.set(labels, value);
      },
    });

  gauge('seglb_build_info', 'seglb version (value is always 1).', ['version'], () => [[{ version }, 1]]);
  gauge('seglb_policy_version', 'Version of the running policy snapshot (+1 per applied change).', [], () => {
    const r = rt();
    return r ? [[{}, r.snapshot.version]] : [];
  });
  gauge('seglb_policy_info', 'Hash of the running policy (value is always 1).', ['hash'], () => {
    const r = rt();
    return r ? [[{ hash: r.snapshot.hash }, 1]] : [];
  });

  // Connections and requests by segment, VIP, verdict and deciding rule (observer's VIP sites).
  const flowCounts = (kind: 0 | 1) => {
    const out: [Labels, number][] = [];
    const seen = new Set<string>();
    for (const site of observer.sites()) {
      for (let v = 0; v < 3; v++) {
        for (let slot = 0; slot < site.width; slot++) {
          const value = site.counts[(kind * 3 + v) * site.width + slot] as number;
          const rule = site.ruleNames[slot] as string;
          const key = `${FLOW_KIND_NAMES[kind]}\u0000${site.seg.name}\u0000${site.ctx.vip.listen}\u0000${FLOW_VERDICT_NAMES[v]}\u0000${rule}`;
          if (value === 0 && fold.total(key) === 0) continue;
          fold.read(key, site, value);
          seen.add(key);
        }
      }
    }
    for (const [key, total] of fold.entries()) {
      const parts = key.split('\u0000');
      if (parts[0] !== FLOW_KIND_NAMES[kind]) continue;
      out.push([
        {
          segment: parts[1] as string,
          vip: parts[2] as string,
          verdict: parts[3] as string,
          rule: parts[4] as string,
        },
        total,
      ]);
    }
    return out;
  };
  const flowLabels = ['segment', 'vip', 'verdict', 'rule'];
  counter(
    'seglb_connections_total',
    'Client connections judged at accept, by segment, VIP, verdict (allow, deny, audit = would deny, let through) and deciding rule.',
    flowLabels,
    () => flowCounts(0),
  );
  counter(
    'seglb_requests_total',
    'HTTP requests, by segment, VIP, verdict and deciding rule.',
    flowLabels,
    () => {
      const out = flowCounts(1);
      observer.pruneSites();
      return out;
    },
  );
  counter(
    'seglb_http_responses_total',
    'HTTP responses sent to clients, by segment, VIP and status class (none = the client got no response).',
    ['segment', 'vip', 'code'],
    function* () {
      for (const t of observer.vipTotals()) {
        for (let c = 0; c < 6; c++) {
          const n = t.statusClasses[c] as number;
          if (n > 0) yield [{ segment: t.segment, vip: t.vip, code: c === 0 ? 'none' : `${c}xx` }, n];
        }
      }
    },
  );
  counter(
    'seglb_client_received_bytes_total',
    'Bytes received from clients, counted when each connection closes.',
    ['segment', 'vip'],
    function* () {
      for (const t of observer.vipTotals()) yield [{ segment: t.segment, vip: t.vip }, t.bytesIn];
    },
  );
  counter(
    'seglb_client_sent_bytes_total',
    'Bytes sent to clients, counted when each connection closes.',
    ['segment', 'vip'],
    function* () {
      for (const t of observer.vipTotals()) yield [{ segment: t.segment, vip: t.vip }, t.bytesOut];
    },
  );
  const hist = (pick: (s: SegmentStats) => LatencyHistogram) =>
    function* (): Iterable<[Labels, LatencyHistogram]> {
      for (const s of observer.allSegmentStats()) if (pick(s).count > 0) yield [{ segment: s.name }, pick(s)];
    };
  registry.registerMetric(
    new CollectedHistogram(
      'seglb_http_request_duration_seconds',
      'Time from a request received to its response sent, by segment (all answered requests).',
      hist((s) => s.requestTime),
    ) as never,
  );
  registry.registerMetric(
    new CollectedHistogram(
      'seglb_backend_response_duration_seconds',
      'Time from dispatching a request to the backend (last attempt) to the end of its response, by segment.',
      hist((s) => s.backendTime),
    ) as never,
  );
  registry.registerMetric(
    new CollectedHistogram(
      'seglb_overhead_duration_seconds',
      "seglb's own share of a proxied request (request duration minus backend time: verdict, header rewriting, backend pick, earlier failed attempts), by segment.",
      hist((s) => s.overheadTime),
    ) as never,
  );

  // Per-rule policy counters (decisions: connection verdicts and L7 request verdicts).
  counter(
    'seglb_rule_decisions_total',
    'Policy decisions by segment, deciding rule (default-deny when none) and verdict; monotonic across reloads.',
    ['segment', 'rule', 'verdict'],
    () => {
      const r = rt();
      if (r) {
        for (const seg of r.snapshot.segments.values()) {
          const p = seg.policy;
          for (const rule of p.rules) {
            fold.read(`rule\u0000${seg.name}\u0000${rule.name}\u0000allow`, p, p.allowed[rule.id] as number);
            fold.read(`rule\u0000${seg.name}\u0000${rule.name}\u0000deny`, p, p.denied[rule.id] as number);
            fold.read(
              `rule\u0000${seg.name}\u0000${rule.name}\u0000audit`,
              p,
              p.auditDenied[rule.id] as number,
            );
          }
          fold.read(`rule\u0000${seg.name}\u0000default-deny\u0000deny`, p, p.defaultDenied);
          fold.read(`rule\u0000${seg.name}\u0000default-deny\u0000audit`, p, p.defaultAuditDenied);
        }
      }
      return prefixed(fold, 'rule', ['segment', 'rule', 'verdict']);
    },
  );

  // Segment data-path counters (kept across reloads by the runtime).
  counter(
    'seglb_responses_generated_total',
    'Error responses seglb generated itself (not the backend), by segment and status.',
    ['segment', 'code'],
    function* () {
      const r = rt();
      if (!r) return;
      for (const s of r.snapshot.segments.values()) {
        const c = s.counters;
        yield [{ segment: s.name, code: '403' }, c.responses403];
        yield [{ segment: s.name, code: '502' }, c.responses502];
        yield [{ segment: s.name, code: '503' }, c.responses503];
        yield [{ segment: s.name, code: '504' }, c.responses504];
      }
    },
  );
  counter(
    'seglb_retries_total',
    'Requests or connections retried on another backend.',
    ['segment'],
    function* () {
      const r = rt();
      if (r) for (const s of r.snapshot.segments.values()) yield [{ segment: s.name }, s.counters.retries];
    },
  );
  counter(
    'seglb_outbound_denied_total',
    'Dials refused because the backend address is outside backend_subnets.',
    ['segment'],
    function* () {
      const r = rt();
      if (r)
        for (const s of r.snapshot.segments.values()) yield [{ segment: s.name }, s.counters.outboundDenied];
    },
  );
  counter('seglb_quarantine_denied_total', 'Connections and requests refused by the quarantine.', [], () => {
    const r = rt();
    return r ? [[{}, r.shared.counters.quarantineDenied]] : [];
  });
  counter(
    'seglb_connection_limit_refused_total',
    'Connections refused by limits.max_connections.',
    [],
    () => {
      const r = rt();
      return r ? [[{}, r.shared.counters.connectionLimitRefused]] : [];
    },
  );
  counter(
    'seglb_proxy_header_invalid_total',
    'Connections closed for an invalid PROXY protocol header.',
    [],
    () => {
      const r = rt();
      return r ? [[{}, r.shared.counters.proxyHeaderInvalid]] : [];
    },
  );
  gauge('seglb_quarantine_entries', 'Entries in the quarantine set.', [], () => {
    const r = rt();
    return r ? [[{}, r.quarantine.size]] : [];
  });

  // Pools and backends.
  const pools = () => {
    const r = rt();
    const out: { segment: string; pool: BackendPool }[] = [];
    if (r) for (const s of r.snapshot.segments.values()) out.push({ segment: s.name, pool: s.pool });
    return out;
  };
  /**
   * Each backend once, as [pool name, backend, the object its counters live on]: segments sharing a
   * pool have their own BackendPool objects, whose backends may share one state object.
   */
  const backends = () => {
    const seen = new Set<object>();
    const out: [string, BackendPool['backends'][number], object][] = [];
    for (const { pool } of pools()) {
      for (const b of pool.backends) {
        const source = (b as unknown as { state?: object }).state ?? b;
        if (seen.has(source)) continue;
        seen.add(source);
        out.push([pool.name, b, source]);
      }
    }
    return out;
  };
  gauge(
    'seglb_backend_up',
    'Backend usable for new requests (1) or not (0: drained, in maintenance, ejected).',
    ['pool', 'backend'],
    () => {
      const up = new Map<string, [Labels, number]>();
      for (const { pool } of pools()) {
        for (const b of pool.backends) {
          const key = `${pool.name}\u0000${b.name}`;
          const prev = up.get(key)?.[1] ?? 0;
          up.set(key, [{ pool: pool.name, backend: b.name }, Math.max(prev, b.usable ? 1 : 0)]);
        }
      }
      return up.values();
    },
  );
  gauge(
    'seglb_backend_health',
    'Active health check verdict, 1 up / 0 down: view="local" this node\'s checks, view="cluster" the majority of the live cluster nodes reporting it (absent without a cluster or reports; it decides with health_check.cluster_view: majority).',
    ['pool', 'backend', 'view'],
    () => {
      const out: [Labels, number][] = [];
      for (const [pool, b] of backends()) {
        out.push([{ pool, backend: b.name, view: 'local' }, b.state.health === 'up' ? 1 : 0]);
        const cluster = b.state.clusterHealth;
        if (cluster !== null)
          out.push([{ pool, backend: b.name, view: 'cluster' }, cluster === 'up' ? 1 : 0]);
      }
      return out;
    },
  );
  gauge(
    'seglb_backend_in_flight',
    'Requests and connections in flight to a backend.',
    ['pool', 'backend'],
    () => {
      const n = new Map<string, [Labels, number]>();
      for (const [pool, b] of backends()) {
        const key = `${pool}\u0000${b.name}`;
        n.set(key, [{ pool, backend: b.name }, (n.get(key)?.[1] ?? 0) + b.inflight]);
      }
      return n.values();
    },
  );
  counter(
    'seglb_backend_picks_total',
    'Requests and connections assigned to a backend.',
    ['pool', 'backend'],
    () => {
      for (const [pool, b, source] of backends())
        fold.read(`picks\u0000${pool}\u0000${b.name}`, source, b.served);
      return prefixed(fold, 'picks', ['pool', 'backend']);
    },
  );
  counter(
    'seglb_backend_connect_failures_total',
    'Connect failures to a backend.',
    ['pool', 'backend'],
    () => {
      for (const [pool, b, source] of backends())
        fold.read(`fail\u0000${pool}\u0000${b.name}`, source, b.failures);
      return prefixed(fold, 'fail', ['pool', 'backend']);
    },
  );
  /** status() of each pool once (the first segment's pool object of each name). */
  const statuses = () => {
    const out: { pool: BackendPool; status: PoolStatusLike }[] = [];
    const names = new Set<string>();
    for (const { pool } of pools()) {
      if (names.has(pool.name)) continue;
      names.add(pool.name);
      const fn = (pool as unknown as { status?: () => unknown }).status;
      if (typeof fn !== 'function') continue;
      try {
        const status = fn.call(pool);
        if (status && typeof status === 'object') out.push({ pool, status: status as PoolStatusLike });
      } catch {
        // a status() that fails must not break the scrape
      }
    }
    return out;
  };
  gauge(
    'seglb_backend_healthy',
    'Backend health as its pool reports it (1 healthy, 0 not).',
    ['pool', 'backend'],
    function* () {
      for (const { pool, status } of statuses()) {
        for (const b of status.backends ?? []) {
          const healthy =
            typeof b.healthy === 'boolean'
              ? b.healthy
              : typeof b.health === 'string'
                ? b.health === 'healthy'
                : null;
          if (healthy !== null)
            yield [{ pool: pool.name, backend: String(b.name ?? b.address) }, healthy ? 1 : 0];
        }
      }
    },
  );
  gauge(
    'seglb_backend_ejected',
    'Backend ejected by outlier detection (1) or not (0).',
    ['pool', 'backend'],
    function* () {
      for (const { pool, status } of statuses()) {
        for (const b of status.backends ?? [])
          if (typeof b.ejected === 'boolean' || b.ejectedUntil !== undefined)
            yield [
              { pool: pool.name, backend: String(b.name ?? b.address) },
              b.ejected === true || (b.ejectedUntil !== undefined && b.ejectedUntil !== null) ? 1 : 0,
            ];
      }
    },
  );
  counter(
    'seglb_backend_ejections_total',
    'Times a backend was ejected by outlier detection.',
    ['pool', 'backend'],
    () => {
      for (const { pool, status } of statuses()) {
        for (const b of status.backends ?? []) {
          // Cumulative in the pool's state already: kept monotonic with a high-water mark.
          const key = `${pool.name}\u0000${String(b.name ?? b.address)}`;
          if (typeof b.ejections === 'number')
            ejections.set(key, Math.max(ejections.get(key) ?? 0, b.ejections));
        }
      }
      return [...ejections].map(([key, n]): [Labels, number] => {
        const [pool, backend] = key.split('\u0000') as [string, string];
        return [{ pool, backend }, n];
      });
    },
  );
  gauge('seglb_pool_queue_depth', 'Requests waiting for a backend of the pool.', ['pool'], () => {
    const n = new Map<string, number>();
    for (const { pool, status } of statuses()) {
      const q = typeof status.queueDepth === 'number' ? status.queueDepth : status.queued;
      if (typeof q === 'number') n.set(pool.name, (n.get(pool.name) ?? 0) + q);
    }
    return [...n].map(([pool, v]): [Labels, number] => [{ pool }, v]);
  });

  // Cluster (the cluster module sets observer.clusterPeers when it runs).
  gauge(
    'seglb_cluster_peer_up',
    'Cluster peer connected and in sync (1) or not (0).',
    ['peer'],
    function* () {
      for (const p of observer.clusterPeers?.() ?? [])
        yield [{ peer: p.name }, p.state === 'alive' || p.state === 'up' ? 1 : 0];
    },
  );
  gauge('seglb_cluster_sync_lag_seconds', 'Replication lag to a cluster peer.', ['peer'], function* () {
    for (const p of observer.clusterPeers?.() ?? [])
      if (p.syncLagMs !== null) yield [{ peer: p.name }, p.syncLagMs / 1000];
  });

  // Detectors, flows, events.
  counter(
    'seglb_alerts_total',
    'Alerts raised by the anomaly detectors, by detector, segment and action.',
    ['detector', 'segment', 'action'],
    function* () {
      for (const [key, n] of observer.alertCounts) {
        const [detector, segment, action] = key.split('\u0000') as [string, string, string];
        yield [{ detector, segment, action }, n];
      }
    },
  );
  gauge(
    'seglb_detector_baseline',
    'EWMA baseline (mean count per interval) of the per-segment detectors.',
    ['detector', 'segment'],
    function* () {
      for (const s of observer.allSegmentStats()) {
        yield [{ detector: DETECTOR_NAMES[0], segment: s.name }, s.det.denyBaseline.mean];
        yield [{ detector: DETECTOR_NAMES[1], segment: s.name }, s.det.newBaseline.mean];
      }
    },
  );
  counter(
    'seglb_detector_quarantine_failures_total',
    'Quarantine actions of detectors that failed.',
    [],
    () => [[{}, observer.quarantineFailures]],
  );
  counter('seglb_flows_total', 'Flow records produced.', [], () => [[{}, observer.ring.written]]);
  counter(
    'seglb_flow_log_lines_total',
    'Flow log lines by outcome (written, dropped).',
    ['outcome'],
    function* () {
      const log = observer.flowLog;
      if (!log) return;
      yield [{ outcome: 'written' }, log.written];
      yield [{ outcome: 'dropped' }, log.dropped];
    },
  );
  counter('seglb_flow_log_rotations_total', 'Flow log files rotated.', [], () => [
    [{}, observer.flowLog?.rotations ?? 0],
  ]);
  counter(
    'seglb_webhook_posts_total',
    'Alert webhook calls by outcome (sent, failed, dropped).',
    ['outcome'],
    function* () {
      const w = observer.webhook;
      if (!w) return;
      yield [{ outcome: 'sent' }, w.sent];
      yield [{ outcome: 'failed' }, w.failed];
      yield [{ outcome: 'dropped' }, w.dropped];
    },
  );
  gauge('seglb_event_stream_clients', 'Clients of the live event stream.', [], () => [
    [{}, observer.events.subscribers],
  ]);
  return registry;
}

/** The fold's keys under `prefix`, split into labels. */
function prefixed(fold: CounterFold, prefix: string, names: readonly string[]): [Labels, number][] {
  const out: [Labels, number][] = [];
  for (const [key, total] of fold.entries()) {
    const parts = key.split('\u0000');
    if (parts[0] !== prefix) continue;
    const labels: Labels = {};
    names.forEach((n, i) => {
      labels[n] = parts[i + 1] as string;
    });
    out.push([labels, total]);
  }
  return out;
}
