// Starts seglb with its admin API and the visibility routes wired as `seglb run` wires them
// (/metrics, /flows, /events, the dashboard; detectors quarantine through PolicyControl), plus a
// tiny Prometheus text-format parser for scrape assertions.

import { wireObserve } from '../../src/admin/index.ts';
import { startSeglbAdmin, type TestSeglbAdmin, tempDir } from './seglb.ts';

/**
 * startSeglbAdmin + wireObserve.
 * @param yaml - full config without `admin:` (an `observe:` section may be included)
 */
export async function startObservedSeglb(yaml: string, dir: string = tempDir()): Promise<TestSeglbAdmin> {
  const lb = await startSeglbAdmin(yaml, dir);
  wireObserve(lb.control, lb.admin);
  return lb;
}

/** One sample of a scrape: metric name (with _bucket/_sum/_count suffixes), labels, value. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** A parsed scrape: samples plus the TYPE of each metric family. */
export interface Scrape {
  readonly samples: readonly Sample[];
  readonly types: ReadonlyMap<string, string>;
  /** Sum of the values of `name` whose labels include every pair of `match`. */
  sum(name: string, match?: Readonly<Record<string, string>>): number;
}

/**
 * Parses the Prometheus text exposition format (0.0.4): `# HELP`/`# TYPE` lines and samples
 * `name{a="x",b="y"} value`, with label values escaped as \\, \" and \n. Throws on a malformed line.
 */
export function parsePrometheusText(text: string): Scrape {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
      if (!m) throw new Error(`bad comment line: ${line}`);
      if (m[1] === 'TYPE') types.set(m[2] as string, m[3] as string);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[3] ?? '';
    let i = 0;
    while (i < body.length) {
      const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(body.slice(i));
      if (!lm) throw new Error(`bad labels in: ${line}`);
      i += lm[0].length;
      let value = '';
      while (body[i] !== '"') {
        if (i >= body.length) throw new Error(`unterminated label in: ${line}`);
        if (body[i] === '\\') {
          const next = body[i + 1];
          value += next === 'n' ? '\n' : (next as string);
          i += 2;
        } else value += body[i++];
      }
      i++; // closing quote
      labels[lm[1] as string] = value;
      if (body[i] === ',') i++;
    }
    const raw = m[4] as string;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    if (Number.isNaN(value) && raw !== 'NaN') throw new Error(`bad value in: ${line}`);
    samples.push({ name: m[1] as string, labels, value });
  }
  return {
    samples,
    types,
    sum(name, match = {}) {
      let total = 0;
      for (const s of samples) {
        if (s.name !== name) continue;
        if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value;
      }
      return total;
    },
  };
}

/** Scrapes /metrics with a bearer token (null: none). */
export async function scrape(lb: TestSeglbAdmin, token: string | null = lb.tokens.read): Promise<Scrape> {
  const res = await fetch(`${lb.adminUrl}/metrics`, {
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
  });
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}: ${await res.text()}`);
  return parsePrometheusText(await res.text());
}
