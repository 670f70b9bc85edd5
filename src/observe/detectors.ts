// Anomaly detectors over the flow stream: deny spike and new-source surge (per-segment EWMA
// baselines, see ewma.ts), lateral movement (one source denied on several segments within a
// window) and per-source connection-rate abuse. The data path only bumps numbers and map counters;
// the EWMA detectors are evaluated once per interval by tick(). docs/observability.md has the math.

import type { ObserveConfig } from '../config/types.ts';
import { Ewma } from './ewma.ts';

type DetectorsConfig = ObserveConfig['detectors'];

/** Names of the detectors (metric label values, alert `detector`). */
export const DETECTOR_NAMES = [
  'deny_spike',
  'new_source_surge',
  'lateral_movement',
  'connection_rate',
] as const;
export type DetectorName = (typeof DETECTOR_NAMES)[number];

/** What a detector found; the observer turns it into an alert (and maybe a quarantine). */
export interface Detection {
  readonly detector: DetectorName;
  readonly segment: string | null;
  readonly source: string | null;
  /** Sources the quarantine action applies to (the culprits). */
  readonly sources: readonly string[];
  readonly value: number;
  readonly threshold: number;
  readonly baseline: number | null;
  readonly message: string;
}

/** Culprits remembered per segment and interval (deny spike, surge). */
const MAX_CULPRITS = 1024;
/** Culprits named in one detection (and quarantined by its action). */
const MAX_NAMED = 16;

/** Per-segment detector state: plain counters the data path bumps. */
export class DetectorSegment {
  readonly name: string;
  /** Denied (and audit would-deny) connections and requests in the current interval. */
  denies = 0;
  /** Sources first seen in the current interval. */
  newSources = 0;
  /** Denies per source in the current interval (bounded). */
  readonly denyBy = new Map<string, number>();
  /** New sources of the current interval (bounded sample). */
  readonly newSample: string[] = [];
  readonly denyBaseline = new Ewma();
  readonly newBaseline = new Ewma();
  /** Intervals evaluated. */
  intervals = 0;

  constructor(name: string) {
    this.name = name;
  }
}

class LateralEntry {
  readonly segments: string[] = [];
  readonly times: number[] = [];
}

/** The detectors of one runtime. */
export class AnomalyDetectors {
  #cfg: DetectorsConfig;
  readonly #segments = new Map<string, DetectorSegment>();
  readonly #rate = new Map<string, number>();
  #rateWindowStart: number;
  readonly #lateral = new Map<string, LateralEntry>();
  readonly #cooldown = new Map<string, number>();
  readonly #now: () => number;
  readonly #emit: (d: Detection) => void;
  /** Sources not tracked because max_tracked_sources was reached. */
  untracked = 0;

  /**
   * @param cfg - `observe.detectors`
   * @param emit - receives every detection (called synchronously; the caller defers actions)
   * @param now - clock in ms
   */
  constructor(cfg: DetectorsConfig, emit: (d: Detection) => void, now: () => number = Date.now) {
    this.#cfg = cfg;
    this.#emit = emit;
    this.#now = now;
    this.#rateWindowStart = now();
  }

  /** Applies a new configuration (baselines are kept). */
  configure(cfg: DetectorsConfig): void {
    this.#cfg = cfg;
  }

  get config(): DetectorsConfig {
    return this.#cfg;
  }

  /** The state object of a segment (created once; the observer keeps a reference). */
  segment(name: string): DetectorSegment {
    let s = this.#segments.get(name);
    if (s === undefined) {
      s = new DetectorSegment(name);
      this.#segments.set(name, s);
    }
    return s;
  }

  /** A connection from `source` was judged (any verdict). */
  connection(seg: DetectorSegment, source: string): void {
    const c = this.#cfg.connection_rate;
    if (!c.enabled) return;
    const n = this.#rate.get(source);
    if (n === undefined) {
      if (this.#rate.size >= this.#cfg.max_tracked_sources) {
        this.untracked++;
        return;
      }
      this.#rate.set(source, 1);
      return;
    }
    this.#rate.set(source, n + 1);
    if (n + 1 === c.max_connections + 1) {
      this.#fire('connection_rate', null, source, {
        detector: 'connection_rate',
        segment: seg.name,
        source,
        sources: [source],
        value: n + 1,
        threshold: c.max_connections,
        baseline: null,
        message: `${source} opened more than ${c.max_connections} connections within ${c.window_ms} ms (last on segment ${seg.name})`,
      });
    }
  }

  /** A connection or request from `source` was denied (or would be, in audit mode) on `seg`. */
  denied(seg: DetectorSegment, source: string): void {
    seg.denies++;
    if (this.#cfg.deny_spike.enabled) {
      const n = seg.denyBy.get(source);
      if (n !== undefined) seg.denyBy.set(source, n + 1);
      else if (seg.denyBy.size < MAX_CULPRITS) seg.denyBy.set(source, 1);
    }
    const lm = this.#cfg.lateral_movement;
    if (!lm.enabled) return;
    const now = this.#now();
    let e = this.#lateral.get(source);
    if (e === undefined) {
      if (this.#lateral.size >= this.#cfg.max_tracked_sources) {
        this.untracked++;
        return;
      }
      e = new LateralEntry();
      this.#lateral.set(source, e);
    }
    const i = e.segments.indexOf(seg.name);
    if (i >= 0) e.times[i] = now;
    else {
      e.segments.push(seg.name);
      e.times.push(now);
    }
    // Forget segments outside the window, then count what is left.
    for (let j = e.segments.length - 1; j >= 0; j--) {
      if (now - (e.times[j] as number) > lm.window_ms) {
        e.segments.splice(j, 1);
        e.times.splice(j, 1);
      }
    }
    if (e.segments.length >= lm.min_segments) {
      this.#fire('lateral_movement', null, source, {
        detector: 'lateral_movement',
        segment: null,
        source,
        sources: [source],
        value: e.segments.length,
        threshold: lm.min_segments,
        baseline: null,
        message: `${source} was denied on ${e.segments.length} segments within ${lm.window_ms} ms: ${e.segments.join(', ')}`,
      });
    }
  }

  /** `source` was seen on `seg` for the first time (as far as the bounded memory knows). */
  newSource(seg: DetectorSegment, source: string): void {
    seg.newSources++;
    if (seg.newSample.length < MAX_CULPRITS) seg.newSample.push(source);
  }

  /**
   * Ends an interval: evaluates the EWMA detectors of every segment, folds the counts into the
   * baselines, resets the interval counters; ends the connection-rate window when it is over and
   * forgets stale lateral-movement entries.
   */
  tick(): void {
    const now = this.#now();
    for (const seg of this.#segments.values()) {
      this.#evaluate(seg, 'deny_spike', seg.denies, seg.denyBaseline, () => topSources(seg.denyBy));
      this.#evaluate(seg, 'new_source_surge', seg.newSources, seg.newBaseline, () =>
        seg.newSample.slice(0, MAX_NAMED),
      );
      seg.intervals++;
      seg.denies = 0;
      seg.newSources = 0;
      seg.denyBy.clear();
      seg.newSample.length = 0;
    }
    if (now - this.#rateWindowStart >= this.#cfg.connection_rate.window_ms) {
      this.#rate.clear();
      this.#rateWindowStart = now;
    }
    const window = this.#cfg.lateral_movement.window_ms;
    for (const [source, e] of this.#lateral) {
      if (e.times.every((t) => now - t > window)) this.#lateral.delete(source);
    }
    for (const [key, until] of this.#cooldown) if (until <= now) this.#cooldown.delete(key);
  }

  /** Sources tracked by the per-source detectors (for metrics). */
  get trackedSources(): number {
    return this.#rate.size + this.#lateral.size;
  }

  #evaluate(
    seg: DetectorSegment,
    name: 'deny_spike' | 'new_source_surge',
    x: number,
    baseline: Ewma,
    culprits: () => string[],
  ): void {
    const c = this.#cfg[name];
    if (!c.enabled) return;
    const threshold = baseline.threshold(c.threshold_sigmas, c.threshold_ratio, c.min_count);
    const anomalous = x >= threshold && seg.intervals >= c.warmup_intervals;
    if (anomalous) {
      const what = name === 'deny_spike' ? 'denied connections/requests' : 'new sources';
      this.#fire(name, seg.name, null, {
        detector: name,
        segment: seg.name,
        source: null,
        sources: culprits(),
        value: x,
        threshold: round(threshold),
        baseline: round(baseline.mean),
        message: `${x} ${what} on segment ${seg.name} in ${this.#cfg.interval_ms} ms (baseline ${round(baseline.mean)}, threshold ${round(threshold)})`,
      });
    }
    // Winsorised update: an anomaly moves the baseline no further than the threshold.
    const learn = seg.intervals < c.warmup_intervals ? x : Math.min(x, threshold);
    baseline.update(learn, c.alpha);
  }

  #fire(name: DetectorName, segment: string | null, source: string | null, d: Detection): void {
    const key = `${name}\u0000${segment ?? ''}\u0000${source ?? ''}`;
    const now = this.#now();
    const until = this.#cooldown.get(key);
    if (until !== undefined && until > now) return;
    this.#cooldown.set(key, now + this.#cfg.cooldown_ms);
    this.#emit(d);
  }
}

function topSources(counts: ReadonlyMap<string, number>): string[] {
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .slice(0, MAX_NAMED)
    .map(([s]) => s);
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
