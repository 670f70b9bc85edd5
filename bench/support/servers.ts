// The servers of the end-to-end benchmark, each a foreground child process with its config written to
// a temp folder: the backend (nginx with 1 worker, else node:http), seglb (HTTP + TCP VIP, segmentation
// on), and the reference proxies HAProxy (nbthread 1), nginx (1 worker, upstream keep-alive) and a
// baseline Node proxy (http-proxy-3 with a keep-alive agent).

import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RECOMMENDED_NODE_FLAGS } from '../../src/cli/node-flags.ts';
import { LARGE_PATH, LARGE_RESPONSE_BYTES } from './payloads.ts';
import { freePort, type ManagedProcess, startProcess, waitForPort } from './processes.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const HOST = '127.0.0.1';

/** A running server with the ports the benchmark sends traffic to. */
export interface BenchServer {
  readonly proc: ManagedProcess;
  readonly httpPort: number;
  /** The L4 (TCP) frontend, when the server has one. */
  readonly tcpPort?: number;
}

/** Absolute path of an installed executable, or null (looked up with `command -v`). */
export function which(name: string): string | null {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

/** First line of `cmd args` (stdout or stderr), for the tool-version line of the report. */
export function versionOf(cmd: string, args: readonly string[]): string {
  const r = spawnSync(cmd, [...args], { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n')[0]?.trim() ?? '';
}

/**
 * nginx as the backend: 1 worker, no access log; `GET /64k` answers a 65536-byte file (sendfile),
 * everything else `return 200 "ok"` (a POST body is read and discarded; the connection stays open).
 * keepalive_requests is raised from the default 1000 so that proxies' upstream connections are not
 * recycled during a run.
 */
export async function startNginxBackend(nginx: string, dir: string): Promise<BenchServer> {
  const port = await freePort(HOST);
  const large = join(dir, 'backend-64k.bin');
  writeFileSync(large, Buffer.alloc(LARGE_RESPONSE_BYTES, 'x'), { mode: 0o644 });
  // Started as root, nginx's worker runs as nobody: it must be able to traverse the (0700) temp folder.
  chmodSync(dir, statSync(dir).mode | 0o011);
  const conf = nginxConf(dir, 'backend', [
    `server {`,
    `  listen ${HOST}:${port} backlog=4096;`,
    `  location / { default_type text/plain; return 200 "ok"; }`,
    `  location = ${LARGE_PATH} { default_type application/octet-stream; sendfile on; alias ${large}; }`,
    `}`,
  ]);
  const proc = startProcess('nginx backend', nginx, ['-p', dir, '-e', join(dir, 'backend.err'), '-c', conf]);
  await waitForPort(proc, HOST, port, 10_000);
  return { proc, httpPort: port };
}

/** node:http backend (when nginx is not installed). */
export async function startNodeBackend(): Promise<BenchServer> {
  const port = await freePort(HOST);
  const proc = startProcess('node backend', process.execPath, [
    join(ROOT, 'bench/support/node-backend.ts'),
    String(port),
  ]);
  await waitForPort(proc, HOST, port, 10_000);
  return { proc, httpPort: port };
}

/**
 * nginx as a reverse proxy: 1 worker, HTTP/1.1 upstream keep-alive, and the same X-Forwarded-*
 * header work seglb does by default (For replaced by the peer, Proto, Host). Request bodies up to
 * 32 KiB stay in memory (`client_body_buffer_size`) and responses are never buffered to a temp file
 * (`proxy_max_temp_file_size 0`), so the 16 KiB POST and 64 KiB response passes touch no disk.
 */
export async function startNginxProxy(nginx: string, dir: string, backendPort: number): Promise<BenchServer> {
  const port = await freePort(HOST);
  const conf = nginxConf(dir, 'proxy', [
    `upstream backend { server ${HOST}:${backendPort}; keepalive 64; keepalive_requests 1000000; }`,
    `server {`,
    `  listen ${HOST}:${port} backlog=4096;`,
    `  client_body_buffer_size 32k;`,
    `  location / {`,
    `    proxy_pass http://backend;`,
    `    proxy_max_temp_file_size 0;`,
    `    proxy_http_version 1.1;`,
    `    proxy_set_header Connection "";`,
    `    proxy_set_header Host $http_host;`,
    `    proxy_set_header X-Forwarded-For $remote_addr;`,
    `    proxy_set_header X-Forwarded-Proto $scheme;`,
    `    proxy_set_header X-Forwarded-Host $http_host;`,
    `  }`,
    `}`,
  ]);
  const proc = startProcess('nginx proxy', nginx, ['-p', dir, '-e', join(dir, 'proxy.err'), '-c', conf]);
  await waitForPort(proc, HOST, port, 10_000);
  return { proc, httpPort: port };
}

function nginxConf(dir: string, name: string, server: readonly string[]): string {
  const file = join(dir, `nginx-${name}.conf`);
  const tmp = join(dir, `nginx-${name}-tmp`);
  writeFileSync(
    file,
    [
      'daemon off;',
      'master_process on;',
      'worker_processes 1;',
      `pid ${join(dir, `nginx-${name}.pid`)};`,
      `error_log ${join(dir, `nginx-${name}.err`)} warn;`,
      'events { worker_connections 8192; multi_accept on; }',
      'http {',
      '  access_log off;',
      '  keepalive_requests 1000000;',
      '  keepalive_timeout 65s;',
      `  client_body_temp_path ${tmp}-body;`,
      `  proxy_temp_path ${tmp}-proxy;`,
      `  fastcgi_temp_path ${tmp}-fastcgi;`,
      `  uwsgi_temp_path ${tmp}-uwsgi;`,
      `  scgi_temp_path ${tmp}-scgi;`,
      ...server.map((l) => `  ${l}`),
      '}',
      '',
    ].join('\n'),
  );
  return file;
}

/**
 * HAProxy with one thread: an HTTP frontend (keep-alive both sides, X-Forwarded-* set as seglb does)
 * and a TCP frontend, both to the backend.
 */
export async function startHaproxy(haproxy: string, dir: string, backendPort: number): Promise<BenchServer> {
  const httpPort = await freePort(HOST);
  const tcpPort = await freePort(HOST);
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(
    file,
    [
      'global',
      '  nbthread 1',
      '  maxconn 8000',
      'defaults',
      '  timeout connect 5s',
      '  timeout client 30s',
      '  timeout server 30s',
      'frontend fe_http',
      '  mode http',
      `  bind ${HOST}:${httpPort}`,
      '  option forwardfor',
      '  http-request set-header X-Forwarded-Proto http',
      '  http-request set-header X-Forwarded-Host %[req.hdr(host)]',
      '  default_backend be_http',
      'backend be_http',
      '  mode http',
      `  server b1 ${HOST}:${backendPort}`,
      'frontend fe_tcp',
      '  mode tcp',
      `  bind ${HOST}:${tcpPort}`,
      '  default_backend be_tcp',
      'backend be_tcp',
      '  mode tcp',
      `  server b1 ${HOST}:${backendPort}`,
      '',
    ].join('\n'),
  );
  const proc = startProcess('haproxy', haproxy, ['-db', '-f', file]);
  await waitForPort(proc, HOST, httpPort, 10_000);
  await waitForPort(proc, HOST, tcpPort, 10_000);
  return { proc, httpPort, tcpPort };
}

/**
 * The baseline Node proxy (bench/support/baseline-proxy.ts): node:http + http-proxy-3 with a
 * keep-alive agent (maxSockets 256) and X-Forwarded-* headers.
 */
export async function startBaselineProxy(backendPort: number): Promise<BenchServer> {
  const port = await freePort(HOST);
  const proc = startProcess('baseline proxy (http-proxy-3)', process.execPath, [
    join(ROOT, 'bench/support/baseline-proxy.ts'),
    String(port),
    String(backendPort),
  ]);
  await waitForPort(proc, HOST, port, 10_000);
  return { proc, httpPort: port };
}

/** Writes every bench/data/country-ip-blocks .cidr file (IPv4 and IPv6) into one ipset file. */
export function writeCountryIpset(dir: string): { file: string; prefixes: number } {
  const base = join(ROOT, 'bench/data/country-ip-blocks');
  const parts: string[] = [];
  let prefixes = 0;
  for (const family of ['ipv4', 'ipv6']) {
    for (const name of readdirSync(join(base, family)).sort()) {
      if (!name.endsWith('.cidr')) continue;
      const lines = readFileSync(join(base, family, name), 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '' && !l.startsWith('#'));
      prefixes += lines.length;
      parts.push(lines.join('\n'));
    }
  }
  const file = join(dir, 'countries.cidr');
  writeFileSync(file, `${parts.join('\n')}\n`);
  return { file, prefixes };
}

/** Which policy seglb runs with. */
export type SeglbRuleset = '1 rule' | '250k rules';

/**
 * seglb as a child process (`node src/cli/main.ts run -c FILE --log-level warn`) with an HTTP and a TCP
 * VIP, no per-source connection limit (the default 100 would refuse part of a c=200 run) and up to 256
 * backend connections (default 128; the baseline proxy's agent has 256). "1 rule": allow 127.0.0.0/8. "250k rules": the same allow plus a deny rule over the whole
 * country ipset (both families), so every accepted connection is looked up in the full matcher.
 * Runs with the flags `npm start` uses (src/cli/node-flags.ts), so the figures are those of a real start.
 * @param nodeFlags - extra node flags (e.g. --cpu-prof)
 */
export async function startSeglb(
  dir: string,
  backendPort: number,
  ruleset: SeglbRuleset,
  countryFile: string,
  nodeFlags: readonly string[] = [],
): Promise<BenchServer> {
  const httpPort = await freePort(HOST);
  const tcpPort = await freePort(HOST);
  const tag = ruleset === '1 rule' ? '1rule' : '250k';
  const big = ruleset === '250k rules';
  const ipsets = big ? `ipsets:\n  countries: { file: ${JSON.stringify(countryFile)} }\n` : '';
  const deny = big ? '\n    deny: [{ name: countries, from: [countries] }]' : '';
  const file = join(dir, `seglb-${tag}.yaml`);
  writeFileSync(
    file,
    `# seglb benchmark config (${ruleset}), written by bench/http.bench.ts
log: { level: warn, format: json }
# The load generator is one source with up to 200 connections (c=200 passes); the reference proxies
# have no per-source limit, and the baseline's agent keeps up to 256 backend connections.
limits: { backend_connections: 256, per_source: { max_connections: 0 } }
${ipsets}segments:
  web:
    vips:
      - { listen: "${HOST}:${httpPort}", protocol: http }
      - { listen: "${HOST}:${tcpPort}", protocol: tcp }
    pool: backend
    backend_subnets: [127.0.0.0/8]
    allow: [{ name: loopback, from: [127.0.0.0/8] }]${deny}
pools:
  backend:
    backends: [{ address: "${HOST}:${backendPort}" }]
`,
  );
  const proc = startProcess(`seglb (${ruleset})`, process.execPath, [
    ...RECOMMENDED_NODE_FLAGS,
    ...nodeFlags,
    join(ROOT, 'src/cli/main.ts'),
    'run',
    '-c',
    file,
    '--log-level',
    'warn',
    '--log-format',
    'json',
  ]);
  await waitForPort(proc, HOST, httpPort, 120_000);
  await waitForPort(proc, HOST, tcpPort, 10_000);
  return { proc, httpPort, tcpPort };
}
