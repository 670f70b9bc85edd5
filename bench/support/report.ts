// Reduces repeated load runs to medians and prints them as a table (plain text for the terminal, or
// Markdown for bench/results/ and docs) with ratios against direct-to-backend and HAProxy of the same
// round; also the README block replacement.

import type { LoadResult } from './load-tools.ts';

/** Median of a non-empty list. */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** One load run plus the CPU each side used during it, in cores (null: not measured). */
export interface Measured extends LoadResult {
  readonly proxyCores: number | null;
  /** The part of proxyCores spent in the kernel (system time). */
  readonly proxySysCores: number | null;
  readonly backendCores: number | null;
  readonly clientCores: number | null;
  /** Cores used by everything else on the machine meanwhile (other users' work). */
  readonly otherCores: number | null;
  /** Highest RSS of the proxy process tree sampled during the run, bytes (null: no proxy). */
  readonly proxyRssPeakBytes: number | null;
}

/** One table row: a scenario's runs under one pass, in round order (runs[i] is round i + 1). */
export interface Row {
  readonly scenario: string;
  readonly runs: readonly Measured[];
  /** Label of the row to compare with in the "vs HAProxy" column (null: none). */
  readonly haproxyPeer: string | null;
}

/** Median figures of a row. */
export interface Summary {
  readonly rps: number;
  readonly min: number;
  readonly max: number;
  /** Medians of the runs' latency percentiles, milliseconds. */
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  /** Sum over the runs. */
  readonly errors: number;
  /** Median cores used by the proxy, the backend, the load generator and the rest of the machine. */
  readonly proxyCores: number | null;
  readonly backendCores: number | null;
  readonly clientCores: number | null;
  readonly otherCores: number | null;
  /** Median proxy CPU time per request, microseconds (robust to a busy machine, unlike req/s). */
  readonly proxyUsPerRequest: number | null;
  /** Median share of the proxy's CPU time spent in the kernel. */
  readonly proxySysShare: number | null;
  /** Highest proxy RSS over all the runs, bytes (null: no proxy). */
  readonly proxyRssPeakBytes: number | null;
}

/** Medians (and the peak RSS) of a non-empty list of runs. */
export function summarise(runs: readonly Measured[]): Summary {
  const rps = runs.map((r) => r.rps);
  const cores = (pick: (m: Measured) => number | null) => {
    const v = runs.map(pick).filter((x): x is number => x !== null);
    return v.length ? median(v) : null;
  };
  const rss = runs.map((r) => r.proxyRssPeakBytes).filter((x): x is number => x !== null);
  return {
    rps: median(rps),
    min: Math.min(...rps),
    max: Math.max(...rps),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    p999: median(runs.map((r) => r.p999)),
    errors: runs.reduce((s, r) => s + r.errors, 0),
    proxyCores: cores((m) => m.proxyCores),
    backendCores: cores((m) => m.backendCores),
    clientCores: cores((m) => m.clientCores),
    otherCores: cores((m) => m.otherCores),
    proxySysShare: cores((m) =>
      m.proxyCores === null || m.proxySysCores === null || m.proxyCores === 0
        ? null
        : m.proxySysCores / m.proxyCores,
    ),
    proxyUsPerRequest: cores((m) =>
      m.proxyCores === null || m.rps === 0 ? null : (m.proxyCores * 1e6) / m.rps,
    ),
    proxyRssPeakBytes: rss.length ? Math.max(...rss) : null,
  };
}

/** req/s ratios of two rows round by round (runs[i] / peer[i]), and their median (null: none). */
export interface RoundRatios {
  readonly perRound: readonly number[];
  readonly median: number | null;
}

/** Ratio of `runs` to `peer` within each round where both ran, and the median of those ratios. */
export function perRoundRatio(runs: readonly Measured[], peer: readonly Measured[]): RoundRatios {
  const perRound: number[] = [];
  for (let i = 0; i < runs.length; i++) {
    const a = runs[i];
    const b = peer[i];
    if (a && b && b.rps > 0) perRound.push(a.rps / b.rps);
  }
  return { perRound, median: perRound.length ? median(perRound) : null };
}

/** A row's summary with its same-round ratios to direct and to its HAProxy peer. */
export interface RowResult {
  readonly scenario: string;
  readonly haproxyPeer: string | null;
  readonly summary: Summary;
  /** null for the direct row itself. */
  readonly vsDirect: RoundRatios | null;
  /** null without a peer, or for the peer itself. */
  readonly vsHaproxy: RoundRatios | null;
}

/**
 * Summarises the rows of one pass. "vs direct" compares with the row named `directName`, "vs HAProxy"
 * with the row named in the row's haproxyPeer (HAProxy of the same mode: http for HTTP, tcp for TCP);
 * both round by round, then the median of the per-round ratios.
 */
export function rowResults(rows: readonly Row[], directName: string): RowResult[] {
  const byName = new Map(rows.map((r) => [r.scenario, r]));
  const direct = byName.get(directName);
  return rows
    .filter((r) => r.runs.length > 0)
    .map((r) => {
      const peer = r.haproxyPeer && r.haproxyPeer !== r.scenario ? byName.get(r.haproxyPeer) : undefined;
      return {
        scenario: r.scenario,
        haproxyPeer: r.haproxyPeer,
        summary: summarise(r.runs),
        vsDirect: direct && r.scenario !== directName ? perRoundRatio(r.runs, direct.runs) : null,
        vsHaproxy: peer ? perRoundRatio(r.runs, peer.runs) : null,
      };
    });
}

const HEADER = [
  'scenario',
  'req/s (median)',
  'min-max',
  'p50 ms',
  'p99 ms',
  'p99.9 ms',
  'vs direct',
  'vs HAProxy',
  'proxy CPU us/req (kernel %)',
  'CPU proxy/backend/client/other',
  'peak RSS MB',
  'errors',
];

/** Builds the table cells of a pass from `rowResults`. */
export function tableCells(results: readonly RowResult[]): string[][] {
  return results.map((r) => {
    const s = r.summary;
    return [
      r.scenario,
      fmtInt(s.rps),
      `${fmtInt(s.min)}-${fmtInt(s.max)}`,
      s.p50.toFixed(2),
      s.p99.toFixed(2),
      s.p999.toFixed(2),
      r.vsDirect?.median == null ? '' : r.vsDirect.median.toFixed(2),
      r.vsHaproxy?.median == null ? '' : r.vsHaproxy.median.toFixed(2),
      s.proxyUsPerRequest === null
        ? ''
        : `${s.proxyUsPerRequest.toFixed(1)} (${Math.round((s.proxySysShare ?? 0) * 100)}%)`,
      [s.proxyCores, s.backendCores, s.clientCores, s.otherCores]
        .map((c) => (c === null ? '-' : c.toFixed(2)))
        .join('/'),
      s.proxyRssPeakBytes === null ? '' : fmtMB(s.proxyRssPeakBytes),
      String(s.errors),
    ];
  });
}

/** Fixed-width text table of `tableCells` (or of `header` and cells of the same width). */
export function formatText(cells: readonly string[][], header: readonly string[] = HEADER): string {
  const all = [header, ...cells];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

/** GitHub-flavoured Markdown table of `tableCells` (or of `header` and cells of the same width). */
export function formatMarkdown(cells: readonly string[][], header: readonly string[] = HEADER): string {
  const align = header.map((_, i) => (i === 0 ? ':--' : '--:'));
  return [header, align, ...cells].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

/** Start and end markers of the generated block in README.md. */
export const README_START = '<!-- bench:start -->';
export const README_END = '<!-- bench:end -->';

/**
 * Replaces what lies between README_START and README_END (the markers stay) with `content`.
 * Returns null when either marker is missing or they are out of order.
 */
export function replaceReadmeBlock(text: string, content: string): string | null {
  const a = text.indexOf(README_START);
  const b = text.indexOf(README_END, a + README_START.length);
  if (a < 0 || b < 0) return null;
  return `${text.slice(0, a + README_START.length)}\n${content.trim()}\n${text.slice(b)}`;
}

/** Integer with thousands separators. */
export function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Bytes as megabytes (10^6), no decimals. */
export function fmtMB(bytes: number): string {
  return (bytes / 1e6).toFixed(0);
}
