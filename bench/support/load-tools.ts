// Load generators for the end-to-end benchmark: autocannon through its programmatic API (in this
// process) and `wrk -t1` as a child process with a generated Lua script (request method and body, and
// a done() hook that prints the figures in one parseable line), both reduced to one result shape.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { niced, trackTransient } from './processes.ts';

/** One load run's figures. */
export interface LoadResult {
  /** Completed responses per second (all statuses; `errors` says if any were not 2xx). */
  readonly rps: number;
  /** Latency percentiles in milliseconds. */
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  /** Non-2xx responses + socket errors + timeouts. */
  readonly errors: number;
  /** Bytes read per completed response (headers included), or null when the tool does not say. */
  readonly bytesPerResponse: number | null;
}

/** What to send. */
export interface LoadSpec {
  /** `http://host:port/path`. */
  readonly url: string;
  readonly connections: number;
  /** Length of the run, seconds. */
  readonly seconds: number;
  /** Send `Connection: close`: one new TCP connection per request (wrk only). */
  readonly closeEach: boolean;
  /** HTTP method (default GET). */
  readonly method?: 'GET' | 'POST';
  /** Request body size in bytes (sent with the method above; 0 or absent: no body). */
  readonly bodyBytes?: number;
}

/** The subset of autocannon's result used here. */
interface AutocannonResult {
  requests: { total: number };
  latency: { p50: number; p99: number; p99_9: number };
  throughput: { total: number };
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

/** The request body of a spec: `bodyBytes` bytes of 'x'. */
function bodyOf(spec: LoadSpec): Buffer | null {
  return spec.bodyBytes ? Buffer.alloc(spec.bodyBytes, 'x') : null;
}

/**
 * Runs autocannon in this process (keep-alive, no pipelining). Connection-per-request is not
 * offered: autocannon 9 drops the response that triggers `reconnectRate` from its counts, and with
 * a `Connection: close` header it writes the next request on the closing socket. Its latencies are
 * whole milliseconds.
 */
export function runAutocannon(spec: LoadSpec): Promise<LoadResult> {
  if (spec.closeEach) return Promise.reject(new Error('autocannon: connection-per-request not supported'));
  autocannonFn ??= require('autocannon') as Autocannon;
  const run = autocannonFn;
  const body = bodyOf(spec);
  const opts: Record<string, unknown> = {
    url: spec.url,
    connections: spec.connections,
    pipelining: 1,
    duration: spec.seconds,
    method: spec.method ?? 'GET',
  };
  if (body) {
    opts['body'] = body;
    opts['headers'] = { 'content-type': 'application/octet-stream' };
  }
  return new Promise((resolve, reject) => {
    run(opts, (err, r) => {
      if (err) {
        reject(err);
        return;
      }
      resolve({
        rps: r.requests.total / r.duration,
        p50: r.latency.p50,
        p99: r.latency.p99,
        p999: r.latency.p99_9,
        errors: r.errors + r.timeouts + r.non2xx,
        bytesPerResponse: r.requests.total ? r.throughput.total / r.requests.total : null,
      });
    });
  });
}

/** Marker of the line the wrk script's done() prints. */
const WRK_MARK = '@@seglb-bench';

/**
 * The Lua script for a spec: method and body (wrk adds Content-Length), and a done() hook printing
 * requests, duration (µs), bytes, latency percentiles (µs) and error counts on one line.
 */
export function wrkScript(spec: LoadSpec): string {
  const lines: string[] = [];
  if (spec.method && spec.method !== 'GET') lines.push(`wrk.method = "${spec.method}"`);
  if (spec.bodyBytes) {
    lines.push(`wrk.body = string.rep("x", ${spec.bodyBytes})`);
    lines.push('wrk.headers["Content-Type"] = "application/octet-stream"');
  }
  lines.push(
    'done = function(summary, latency, requests)',
    '  local e = summary.errors',
    `  io.write(string.format("${WRK_MARK} requests=%d duration_us=%d bytes=%d p50_us=%.1f p99_us=%.1f ` +
      'p999_us=%.1f connect=%d read=%d write=%d status=%d timeout=%d\\n",',
    '    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(99),',
    '    latency:percentile(99.9), e.connect, e.read, e.write, e.status, e.timeout))',
    'end',
    '',
  );
  return lines.join('\n');
}

let scriptDir: string | null = null;

/** Writes the script for a spec (once per distinct script) into a temp folder removed at exit. */
function scriptFile(spec: LoadSpec): string {
  if (scriptDir === null) {
    const dir = mkdtempSync(join(tmpdir(), 'seglb-bench-wrk-'));
    scriptDir = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  const text = wrkScript(spec);
  const file = join(scriptDir, `${createHash('sha256').update(text).digest('hex').slice(0, 12)}.lua`);
  if (!existsSync(file)) writeFileSync(file, text);
  return file;
}

/**
 * Runs `wrk -t1 -c<connections> -d<seconds>s -s <script>` and parses the script's summary line. wrk
 * takes whole seconds: `spec.seconds` is rounded (at least 1).
 */
export function runWrk(wrk: string, spec: LoadSpec): Promise<LoadResult> {
  const seconds = Math.max(1, Math.round(spec.seconds));
  const args = ['-t1', `-c${spec.connections}`, `-d${seconds}s`, '-s', scriptFile(spec)];
  if (spec.closeEach) args.push('-H', 'Connection: close');
  args.push(spec.url);
  return new Promise((resolve, reject) => {
    const [cmd, argv] = niced(wrk, args);
    const child = execFile(cmd, argv, { timeout: (seconds + 30) * 1000 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`wrk failed: ${err.message}\n${stderr}`));
        return;
      }
      try {
        resolve(parseWrkSummary(stdout));
      } catch (e) {
        reject(e);
      }
    });
    trackTransient(child);
  });
}

/**
 * Parses the summary line printed by the done() hook of `wrkScript` (wrk's own report is ignored).
 * Errors are connect/read/write/timeout socket errors plus non-2xx/3xx responses.
 * @throws when the line or a figure is missing
 */
export function parseWrkSummary(text: string): LoadResult {
  const line = text.split('\n').find((l) => l.startsWith(WRK_MARK));
  if (!line) throw new Error(`cannot parse wrk output (no ${WRK_MARK} line):\n${text}`);
  const f = new Map<string, number>();
  for (const kv of line.slice(WRK_MARK.length).trim().split(/\s+/)) {
    const [k, v] = kv.split('=');
    if (k && v !== undefined) f.set(k, Number(v));
  }
  const need = (k: string): number => {
    const v = f.get(k);
    if (v === undefined || !Number.isFinite(v)) throw new Error(`wrk summary lacks ${k}: ${line}`);
    return v;
  };
  const requests = need('requests');
  const durationUs = need('duration_us');
  return {
    rps: durationUs > 0 ? (requests * 1e6) / durationUs : 0,
    p50: need('p50_us') / 1000,
    p99: need('p99_us') / 1000,
    p999: need('p999_us') / 1000,
    errors: ['connect', 'read', 'write', 'status', 'timeout'].reduce((s, k) => s + need(k), 0),
    bytesPerResponse: requests ? need('bytes') / requests : null,
  };
}
