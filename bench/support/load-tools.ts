// Load generators for the end-to-end benchmark: autocannon through its programmatic API (in this
// process) and `wrk -t1` as a child process, both reduced to one result shape.

import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { niced, trackTransient } from './processes.ts';

/** One load run's figures. */
export interface LoadResult {
  /** Completed responses per second (all statuses; `errors` says if any were not 2xx). */
  readonly rps: number;
  /** Latency percentiles in milliseconds. */
  readonly p50: number;
  readonly p99: number;
  /** Non-2xx responses + socket errors + timeouts. */
  readonly errors: number;
}

/** What to send. */
export interface LoadSpec {
  readonly url: string;
  readonly connections: number;
  readonly seconds: number;
  /** Send `Connection: close`: one new TCP connection per request (wrk only). */
  readonly closeEach: boolean;
}

/** The subset of autocannon's result used here. */
interface AutocannonResult {
  requests: { total: number };
  latency: { p50: number; p99: number };
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
}
type Autocannon = (
  opts: Record<string, unknown>,
  cb: (err: Error | null, result: AutocannonResult) => void,
) => unknown;

const require = createRequire(import.meta.url);
let autocannonFn: Autocannon | null = null;

/**
 * Runs autocannon in this process (keep-alive, no pipelining). Connection-per-request is not
 * offered: autocannon 9 drops the response that triggers `reconnectRate` from its counts, and with
 * a `Connection: close` header it writes the next request on the closing socket.
 */
export function runAutocannon(spec: LoadSpec): Promise<LoadResult> {
  if (spec.closeEach) return Promise.reject(new Error('autocannon: connection-per-request not supported'));
  autocannonFn ??= require('autocannon') as Autocannon;
  const run = autocannonFn;
  return new Promise((resolve, reject) => {
    run({ url: spec.url, connections: spec.connections, pipelining: 1, duration: spec.seconds }, (err, r) => {
      if (err) {
        reject(err);
        return;
      }
      resolve({
        rps: r.requests.total / r.duration,
        p50: r.latency.p50,
        p99: r.latency.p99,
        errors: r.errors + r.timeouts + r.non2xx,
      });
    });
  });
}

/** Runs `wrk -t1 -c<connections> -d<seconds>s --latency` and parses its report. */
export function runWrk(wrk: string, spec: LoadSpec): Promise<LoadResult> {
  const args = ['-t1', `-c${spec.connections}`, `-d${spec.seconds}s`, '--latency'];
  if (spec.closeEach) args.push('-H', 'Connection: close');
  args.push(spec.url);
  return new Promise((resolve, reject) => {
    const [cmd, argv] = niced(wrk, args);
    const child = execFile(cmd, argv, { timeout: (spec.seconds + 30) * 1000 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`wrk failed: ${err.message}\n${stderr}`));
        return;
      }
      try {
        resolve(parseWrkReport(stdout));
      } catch (e) {
        reject(e);
      }
    });
    trackTransient(child);
  });
}

/**
 * Parses wrk's text report (Requests/sec, the --latency distribution, error lines).
 * @throws when a figure is missing
 */
export function parseWrkReport(text: string): LoadResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const p50 = /^\s+50%\s+([\d.]+)(us|ms|s)\s*$/m.exec(text);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s)\s*$/m.exec(text);
  if (!rps?.[1] || !p50 || !p99) throw new Error(`cannot parse wrk output:\n${text}`);
  let errors = 0;
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  if (socket) errors += socket.slice(1).reduce((s, n) => s + Number(n), 0);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text);
  if (non2xx?.[1]) errors += Number(non2xx[1]);
  return { rps: Number(rps[1]), p50: toMs(p50), p99: toMs(p99), errors };
}

function toMs(m: RegExpExecArray): number {
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}
