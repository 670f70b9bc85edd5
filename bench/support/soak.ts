// Soak mode of the end-to-end benchmark (--soak SECONDS): one seglb with the 250k-prefix policy under
// keep-alive load for SECONDS, alternating small GETs and 64 KiB responses, with its RSS (from /proc)
// and JS heap (heap-probe.ts) sampled at a fixed interval; reports the series, the peak RSS and the
// growth between an early and the last window, against the targets "RSS < 300 MB" and "no growth".

import type { LoadResult, LoadSpec } from './load-tools.ts';
import { type HeapSample, requestHeap, treeRssBytes } from './memory.ts';
import { LARGE_PATH } from './payloads.ts';
import { fmtMB } from './report.ts';
import type { BenchServer } from './servers.ts';

/** RSS the 250k-policy process must stay under, bytes (10^6-byte MB). */
export const RSS_TARGET_BYTES = 300e6;
/** Growth of the mean RSS between the early and the last window above which "no growth" is not met. */
export const GROWTH_TARGET_SHARE = 0.05;

/** One memory sample of the soak. */
export interface SoakSample {
  /** Seconds since the load started. */
  readonly t: number;
  /** RSS of the seglb process tree from /proc, bytes. */
  readonly rssBytes: number | null;
  /** process.memoryUsage() inside seglb (null: the probe did not answer). */
  readonly heap: HeapSample | null;
  /** The load running at that moment. */
  readonly load: string;
}

/** One load segment of the soak. */
export interface SoakSegment {
  readonly load: string;
  /** Seconds since the load started. */
  readonly start: number;
  readonly seconds: number;
  readonly result: LoadResult;
}

/** Mean of a window and the change between the early and the last window. */
export interface Growth {
  readonly earlyMean: number | null;
  readonly lateMean: number | null;
  /** lateMean - earlyMean, bytes. */
  readonly bytes: number | null;
  /** (lateMean - earlyMean) / earlyMean. */
  readonly share: number | null;
}

/** The soak's result (written as JSON). */
export interface SoakResult {
  readonly seconds: number;
  readonly intervalSeconds: number;
  readonly segmentSeconds: number;
  /** Window length, seconds: early window [w, 2w), last window (seconds - w, seconds]. */
  readonly windowSeconds: number;
  readonly connections: number;
  readonly tool: string;
  readonly baseline: SoakSample;
  readonly samples: readonly SoakSample[];
  readonly segments: readonly SoakSegment[];
  readonly peakRssBytes: number | null;
  readonly peakHeapUsedBytes: number | null;
  readonly rssGrowth: Growth;
  readonly heapUsedGrowth: Growth;
  readonly targets: readonly { name: string; value: string; met: boolean | null }[];
}

/** What the soak needs from the benchmark. */
export interface SoakParams {
  /** Total load time, seconds. */
  readonly seconds: number;
  readonly connections: number;
  /** seglb with the 250k policy, started with heapProbeFlags(). */
  readonly seglb: BenchServer;
  readonly toolName: string;
  /** Runs one load run with the benchmark's tool. */
  readonly run: (spec: LoadSpec) => Promise<LoadResult>;
  readonly write: (line: string) => void;
}

/**
 * Sample interval (10 s; shorter for soaks under 100 s, so that there are 10 samples), segment
 * length (30 s; half the soak when shorter than 60 s) and window (60 s; a fifth of the soak when
 * shorter than 300 s), all seconds.
 */
export function soakTiming(seconds: number): { interval: number; segment: number; window: number } {
  return {
    interval: Math.min(10, Math.max(1, seconds / 10)),
    segment: Math.min(30, Math.max(1, seconds / 2)),
    window: Math.min(60, seconds / 5),
  };
}

/** Runs the soak: segments back to back for `seconds`, memory sampled meanwhile. */
export async function runSoak(p: SoakParams): Promise<SoakResult> {
  const { interval, segment, window } = soakTiming(p.seconds);
  const pid = p.seglb.proc.child.pid;
  const url = (path: string) => `http://127.0.0.1:${p.seglb.httpPort}${path}`;
  const loads = [
    { name: `GET small, c=${p.connections}`, path: '/' },
    { name: `GET 64 KiB, c=${p.connections}`, path: LARGE_PATH },
  ];
  let current = 'idle';
  const sample = async (t: number): Promise<SoakSample> => {
    const [rss, heap] = [treeRssBytes(pid), await requestHeap(p.seglb.proc.child)];
    return { t, rssBytes: rss, heap, load: current };
  };
  const mb = (b: number | null | undefined) => (b == null ? '-' : fmtMB(b)).padStart(5);
  const show = (s: SoakSample) =>
    p.write(
      `  t=${s.t.toFixed(0).padStart(4)} s  RSS ${mb(s.rssBytes)} MB  heap used ${mb(s.heap?.heapUsed)} MB` +
        ` of ${mb(s.heap?.heapTotal)} MB  external ${mb(s.heap?.external)} MB  (${s.load})`,
    );

  const baseline = await sample(0);
  p.write(
    `soak: ${p.seconds} s of ${p.toolName} load on seglb (250k rules), ${segment} s segments alternating ` +
      `${loads.map((l) => l.name).join(' / ')}; memory every ${interval} s; growth = mean of ` +
      `(${p.seconds - window}, ${p.seconds}] s vs [${window}, ${2 * window}) s`,
  );
  show(baseline);

  const samples: SoakSample[] = [];
  const t0 = performance.now();
  let stop = false;
  const sampler = (async () => {
    for (let k = 1; k * interval <= p.seconds + 1e-9 && !stop; k++) {
      const wait = t0 + k * interval * 1000 - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      if (stop) break;
      const s = await sample(k * interval);
      samples.push(s);
      show(s);
    }
  })();

  const segments: SoakSegment[] = [];
  for (let i = 0, start = 0; start < p.seconds - 1e-9; i++) {
    const seconds = Math.min(segment, p.seconds - start);
    const load = loads[i % loads.length] as (typeof loads)[number];
    current = load.name;
    const result = await p.run({
      url: url(load.path),
      connections: p.connections,
      seconds,
      closeEach: false,
    });
    segments.push({ load: load.name, start, seconds, result });
    start += seconds;
  }
  current = 'done';
  // The last sample (t = seconds) falls just before the last segment ends; wait for it, no longer.
  await Promise.race([sampler, new Promise((r) => setTimeout(r, interval * 1000))]);
  stop = true;
  await sampler;

  const rss = samples.map((s) => s.rssBytes).filter((x): x is number => x !== null);
  const heapUsed = samples.map((s) => s.heap?.heapUsed).filter((x): x is number => x !== undefined);
  const growthOf = (pick: (s: SoakSample) => number | null | undefined): Growth => {
    const mean = (from: number, to: number, closedRight: boolean) => {
      const v = samples
        .filter((s) => (closedRight ? s.t > from && s.t <= to : s.t >= from && s.t < to))
        .map(pick)
        .filter((x): x is number => x != null);
      return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
    };
    const earlyMean = mean(window, 2 * window, false);
    const lateMean = mean(p.seconds - window, p.seconds + interval / 2, true);
    const bytes = earlyMean === null || lateMean === null ? null : lateMean - earlyMean;
    return { earlyMean, lateMean, bytes, share: bytes === null || !earlyMean ? null : bytes / earlyMean };
  };
  const rssGrowth = growthOf((s) => s.rssBytes);
  const heapUsedGrowth = growthOf((s) => s.heap?.heapUsed);
  const peakRssBytes = rss.length ? Math.max(...rss) : null;
  const pct = (x: number | null) => (x === null ? '-' : `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)}%`);
  const dMB = (b: number | null) => (b === null ? '-' : `${b >= 0 ? '+' : ''}${(b / 1e6).toFixed(1)} MB`);
  const targets = [
    {
      name: 'RSS < 300 MB',
      value: peakRssBytes === null ? 'not measured' : `peak ${(peakRssBytes / 1e6).toFixed(1)} MB`,
      met: peakRssBytes === null ? null : peakRssBytes < RSS_TARGET_BYTES,
    },
    {
      name: `no growth (RSS mean of the last window within +${GROWTH_TARGET_SHARE * 100}% of the early one)`,
      value: `${dMB(rssGrowth.bytes)} (${pct(rssGrowth.share)})`,
      met: rssGrowth.share === null ? null : rssGrowth.share <= GROWTH_TARGET_SHARE,
    },
  ];

  p.write('\nload segments:');
  for (const s of segments) {
    p.write(
      `  ${s.start.toFixed(0).padStart(4)} s +${s.seconds.toFixed(0).padStart(3)} s  ${s.load.padEnd(22)} ` +
        `${Math.round(s.result.rps).toString().padStart(7)} req/s  p99 ${s.result.p99.toFixed(2)} ms  ` +
        `p99.9 ${s.result.p999.toFixed(2)} ms  errors ${s.result.errors}`,
    );
  }
  p.write(
    `\npeak RSS ${peakRssBytes === null ? '-' : fmtMB(peakRssBytes)} MB; peak heap used ` +
      `${heapUsed.length ? fmtMB(Math.max(...heapUsed)) : '-'} MB (before load: RSS ${mb(baseline.rssBytes).trim()} MB)`,
  );
  p.write(
    `growth, mean of the last ${window} s vs [${window}, ${2 * window}) s: RSS ${dMB(rssGrowth.bytes)} ` +
      `(${pct(rssGrowth.share)}), heap used ${dMB(heapUsedGrowth.bytes)} (${pct(heapUsedGrowth.share)})`,
  );
  for (const t of targets)
    p.write(`target ${t.name}: ${t.value}: ${t.met === null ? 'not measured' : t.met ? 'met' : 'NOT met'}`);

  return {
    seconds: p.seconds,
    intervalSeconds: interval,
    segmentSeconds: segment,
    windowSeconds: window,
    connections: p.connections,
    tool: p.toolName,
    baseline,
    samples,
    segments,
    peakRssBytes,
    peakHeapUsedBytes: heapUsed.length ? Math.max(...heapUsed) : null,
    rssGrowth,
    heapUsedGrowth,
    targets,
  };
}
