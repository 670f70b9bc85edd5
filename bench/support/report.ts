// Reduces repeated load runs to medians and prints them as a table (plain text for the terminal, or
// Markdown for docs/performance.md) with ratios against direct-to-backend and HAProxy of the same run.

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
}

/** One table row: a scenario's runs under one tool and connection mode. */
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
  readonly p50: number;
  readonly p99: number;
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
}

export function summarise(runs: readonly Measured[]): Summary {
  const rps = runs.map((r) => r.rps);
  const cores = (pick: (m: Measured) => number | null) => {
    const v = runs.map(pick).filter((x): x is number => x !== null);
    return v.length ? median(v) : null;
  };
  return {
    rps: median(rps),
    min: Math.min(...rps),
    max: Math.max(...rps),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
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
  };
}

const HEADER = [
  'scenario',
  'req/s (median)',
  'min-max',
  'p50 ms',
  'p99 ms',
  'vs direct',
  'vs HAProxy',
  'proxy CPU us/req (kernel %)',
  'CPU proxy/backend/client/other',
  'errors',
];

/**
 * Builds the table cells. "vs direct" divides by the row named `directName`; "vs HAProxy" by the row
 * named in the row's haproxyPeer (HAProxy of the same mode: http for HTTP, tcp for TCP).
 */
export function tableCells(rows: readonly Row[], directName: string): string[][] {
  const sums = new Map(rows.map((r) => [r.scenario, summarise(r.runs)]));
  const direct = sums.get(directName);
  return rows.map((r) => {
    const s = sums.get(r.scenario) as Summary;
    const peer = r.haproxyPeer ? sums.get(r.haproxyPeer) : undefined;
    return [
      r.scenario,
      fmtInt(s.rps),
      `${fmtInt(s.min)}-${fmtInt(s.max)}`,
      s.p50.toFixed(2),
      s.p99.toFixed(2),
      direct && r.scenario !== directName ? (s.rps / direct.rps).toFixed(2) : '',
      peer && r.haproxyPeer !== r.scenario ? (s.rps / peer.rps).toFixed(2) : '',
      s.proxyUsPerRequest === null
        ? ''
        : `${s.proxyUsPerRequest.toFixed(1)} (${Math.round((s.proxySysShare ?? 0) * 100)}%)`,
      [s.proxyCores, s.backendCores, s.clientCores, s.otherCores]
        .map((c) => (c === null ? '-' : c.toFixed(2)))
        .join('/'),
      String(s.errors),
    ];
  });
}

/** Fixed-width text table. */
export function formatText(cells: readonly string[][]): string {
  const all = [HEADER, ...cells];
  const widths = HEADER.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ');
  return [line(HEADER), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

/** GitHub-flavoured Markdown table. */
export function formatMarkdown(cells: readonly string[][]): string {
  const align = HEADER.map((_, i) => (i === 0 ? ':--' : '--:'));
  return [HEADER, align, ...cells].map((r) => `| ${r.join(' | ')} |`).join('\n');
}

function fmtInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}
