// `seglb ctl`: the admin API from the command line (status, explain, quarantine, segment mode,
// rules, IP sets, backend states, reload, diff, audit, lint, simulate), so nobody needs curl.
// Exit codes: 0 the call succeeded, 1 the API refused it or could not be reached, 2 usage.

import { readFileSync, statSync } from 'node:fs';
import { type IncomingMessage, request as plainRequest, type RequestOptions } from 'node:http';
import { request as tlsRequest } from 'node:https';
import { parseArgs } from 'node:util';
import { SeglbError } from '../errors.ts';
import {
  applied,
  type ChangeAnswer,
  formatApiError,
  persistWarning,
  type QuarantineEntryAnswer,
  showAudit,
  showDiff,
  showExplain,
  showIpSets,
  showLint,
  showQuarantine,
  showQuarantineAdded,
  showReload,
  showSimulate,
  showStatus,
} from './ctl-show.ts';

/** Where output goes (tests pass their own). */
export interface CtlIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly env: NodeJS.ProcessEnv;
}

const DEFAULT_ADMIN = 'http://127.0.0.1:9900';
/** Longest wait for one API call (a reload of a large config takes a while). */
const CALL_TIMEOUT_MS = 60_000;

export const CTL_USAGE = `seglb ctl - the admin API from the command line

Usage: seglb ctl [--admin URL] [--token-file FILE] [--ca FILE] [--json] COMMAND ...

Commands:
  status                                     version, policy version/hash, segments, VIPs, pools
  explain --segment S --from ADDR [--method M] [--path P] [--host H] [--header K:V]...
                                             verdict, deciding rule (file:line), matched rules
  quarantine list
  quarantine add CIDR [--ttl 30m|3600s|1h] [--reason TEXT]     closes open connections from CIDR
  quarantine remove CIDR
  segment mode NAME enforce|audit
  rule add SEGMENT allow|deny NAME --from SRC[,SRC...] [--methods M,..] [--paths P,..] [--hosts H,..]
                                             [--header K:V]...
  rule remove SEGMENT allow|deny NAME
  ipset list
  ipset add|remove NAME CIDR...
  backend state POOL BACKEND ready|drain|maintenance
  reload                                     re-read the config file (runtime changes re-applied)
  diff                                       runtime changes on top of the file, and drift
  audit [--limit N]                          the last N changes (default 20)
  lint                                       rules that cannot do what they look like they do
  simulate --ops FILE.json [--window 15m]    what a candidate change would flip for recent sources

Options:
  --admin URL        admin API address (default: $SEGLB_ADMIN, else ${DEFAULT_ADMIN})
  --token-file FILE  file holding the bearer token (default: $SEGLB_TOKEN). Never on the command
                     line: it would show in ps.
  --ca FILE          PEM CA certificate to trust for an https:// admin API
  --json             print the API's JSON answer instead of text

Exit: 0 success, 1 the API refused the call (code, message and issues printed) or could not be
reached, 2 usage. docs/api.md describes every call.
`;

/** Options every command accepts. */
const GLOBAL_OPTIONS = ['admin', 'token-file', 'ca', 'json', 'help'];

type Values = ReturnType<typeof parseCtl>['values'];

/** One API call. */
interface ApiCall {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  readonly path: string;
  readonly body?: unknown;
}

/** A subcommand: its words, positional arguments, extra options, the call and how to show the answer. */
interface Command {
  readonly words: readonly string[];
  /** Positional argument names; a trailing `...` takes one or more. */
  readonly args: readonly string[];
  readonly options: readonly string[];
  readonly call: (args: readonly string[], v: Values) => ApiCall;
  // biome-ignore lint/suspicious/noExplicitAny: the API's JSON answers, shaped per route (docs/api.md)
  readonly show: (body: any, args: readonly string[], v: Values) => string;
}

/** A wrong command line: printed with a pointer to --help, exit 2. */
function usage(message: string): SeglbError {
  return new SeglbError('SEGLB_CLI_USAGE', message);
}

function isUsageError(err: unknown): err is SeglbError {
  return err instanceof SeglbError && err.code === 'SEGLB_CLI_USAGE';
}

const enc = encodeURIComponent;

const COMMANDS: readonly Command[] = [
  {
    words: ['status'],
    args: [],
    options: [],
    call: () => ({ method: 'GET', path: '/status' }),
    show: showStatus,
  },
  {
    words: ['explain'],
    args: [],
    options: ['segment', 'from', 'method', 'path', 'host', 'header'],
    call: (_a, v) => {
      if (!v.segment) throw usage('explain needs --segment NAME');
      if (!v.from) throw usage('explain needs --from ADDRESS');
      const headers = headerMap(v.header);
      return {
        method: 'POST',
        path: '/explain',
        body: {
          segment: v.segment,
          source: v.from,
          method: v.method,
          path: v.path,
          host: v.host,
          headers: v.header ? headers : undefined,
        },
      };
    },
    show: showExplain,
  },
  {
    words: ['quarantine', 'list'],
    args: [],
    options: [],
    call: () => ({ method: 'GET', path: '/quarantine' }),
    show: (entries: QuarantineEntryAnswer[]) => showQuarantine(entries),
  },
  {
    words: ['quarantine', 'add'],
    args: ['CIDR'],
    options: ['ttl', 'reason'],
    call: ([cidr], v) => ({
      method: 'POST',
      path: '/quarantine',
      body: {
        cidr,
        ttl_ms: v.ttl === undefined ? undefined : parseDuration(v.ttl, '--ttl'),
        reason: v.reason,
      },
    }),
    show: showQuarantineAdded,
  },
  {
    words: ['quarantine', 'remove'],
    args: ['CIDR'],
    options: [],
    call: ([cidr]) => ({ method: 'DELETE', path: `/quarantine/${enc(cidr as string)}` }),
    show: (b: { removed: string; persisted?: boolean | null }) =>
      `removed quarantine entry ${b.removed}${persistWarning(b)}`,
  },
  {
    words: ['segment', 'mode'],
    args: ['NAME', 'MODE'],
    options: [],
    call: ([name, mode]) => {
      if (mode !== 'enforce' && mode !== 'audit')
        throw usage(`mode is enforce or audit, got ${JSON.stringify(mode)}`);
      return { method: 'PUT', path: `/segments/${enc(name as string)}/mode`, body: { mode } };
    },
    show: (b: ChangeAnswer, [name, mode]) => `segment ${name}: mode ${mode}; ${applied(b)}`,
  },
  {
    words: ['rule', 'add'],
    args: ['SEGMENT', 'KIND', 'NAME'],
    options: ['from', 'methods', 'paths', 'hosts', 'header'],
    call: ([segment, kind, name], v) => {
      checkKind(kind);
      if (!v.from) throw usage('rule add needs --from SOURCE[,SOURCE...]');
      const rule: Record<string, unknown> = { name, from: list(v.from) };
      if (v.methods) rule.methods = list(v.methods).map((m) => m.toUpperCase());
      if (v.paths) rule.paths = list(v.paths);
      if (v.hosts) rule.hosts = list(v.hosts);
      if (v.header) rule.headers = headerMap(v.header);
      return { method: 'POST', path: `/segments/${enc(segment as string)}/rules`, body: { kind, rule } };
    },
    show: (b: ChangeAnswer, [segment, kind, name]) =>
      `segment ${segment}: ${kind} rule "${name}" added; ${applied(b)}`,
  },
  {
    words: ['rule', 'remove'],
    args: ['SEGMENT', 'KIND', 'NAME'],
    options: [],
    call: ([segment, kind, name]) => {
      checkKind(kind);
      return {
        method: 'DELETE',
        path: `/segments/${enc(segment as string)}/rules/${enc(kind as string)}/${enc(name as string)}`,
      };
    },
    show: (b: ChangeAnswer, [segment, kind, name]) =>
      `segment ${segment}: ${kind} rule "${name}" removed; ${applied(b)}`,
  },
  {
    words: ['ipset', 'list'],
    args: [],
    options: [],
    call: () => ({ method: 'GET', path: '/ipsets' }),
    show: showIpSets,
  },
  {
    words: ['ipset', 'add'],
    args: ['NAME', 'CIDR...'],
    options: [],
    call: ([name, ...cidrs]) => ({
      method: 'POST',
      path: `/ipsets/${enc(name as string)}/entries`,
      body: { cidrs },
    }),
    show: (b: ChangeAnswer, [name, ...cidrs]) => `IP set ${name}: added ${cidrs.join(', ')}; ${applied(b)}`,
  },
  {
    words: ['ipset', 'remove'],
    args: ['NAME', 'CIDR...'],
    options: [],
    call: ([name, ...cidrs]) => ({
      method: 'DELETE',
      path: `/ipsets/${enc(name as string)}/entries`,
      body: { cidrs },
    }),
    show: (b: ChangeAnswer, [name, ...cidrs]) => `IP set ${name}: removed ${cidrs.join(', ')}; ${applied(b)}`,
  },
  {
    words: ['backend', 'state'],
    args: ['POOL', 'BACKEND', 'STATE'],
    options: [],
    call: ([pool, backend, state]) => {
      if (state !== 'ready' && state !== 'drain' && state !== 'maintenance')
        throw usage(`state is ready, drain or maintenance, got ${JSON.stringify(state)}`);
      return {
        method: 'PUT',
        path: `/pools/${enc(pool as string)}/backends/${enc(backend as string)}/state`,
        body: { state },
      };
    },
    show: (b: { pool: string; backend: string; state: string; persisted?: boolean | null }) =>
      `pool ${b.pool} backend ${b.backend}: ${b.state}${persistWarning(b)}`,
  },
  {
    words: ['reload'],
    args: [],
    options: [],
    call: () => ({ method: 'POST', path: '/reload' }),
    show: showReload,
  },
  {
    words: ['diff'],
    args: [],
    options: [],
    call: () => ({ method: 'GET', path: '/diff' }),
    show: showDiff,
  },
  {
    words: ['audit'],
    args: [],
    options: ['limit'],
    call: (_a, v) => {
      const limit = v.limit === undefined ? 20 : Number(v.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
        throw usage(`--limit is a whole number from 1 to 1000, got ${JSON.stringify(v.limit)}`);
      return { method: 'GET', path: `/audit?limit=${limit}` };
    },
    show: showAudit,
  },
  {
    words: ['lint'],
    args: [],
    options: [],
    call: () => ({ method: 'GET', path: '/lint' }),
    show: showLint,
  },
  {
    words: ['simulate'],
    args: [],
    options: ['ops', 'window'],
    call: (_a, v) => {
      if (!v.ops) throw usage('simulate needs --ops FILE.json');
      let parsed: unknown;
      try {
        parsed = JSON.parse(readFileSync(v.ops, 'utf8'));
      } catch (err) {
        throw usage(`--ops ${v.ops}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
      const ops = Array.isArray(parsed) ? parsed : (parsed as { ops?: unknown } | null)?.ops;
      if (!Array.isArray(ops))
        throw usage(`--ops ${v.ops} must hold a JSON list of operations or { "ops": [...] }`);
      return {
        method: 'POST',
        path: '/simulate',
        body: { ops, window_ms: v.window === undefined ? undefined : parseDuration(v.window, '--window') },
      };
    },
    show: showSimulate,
  },
];

function parseCtl(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      admin: { type: 'string' },
      'token-file': { type: 'string' },
      ca: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
      segment: { type: 'string' },
      from: { type: 'string' },
      method: { type: 'string' },
      path: { type: 'string' },
      host: { type: 'string' },
      header: { type: 'string', multiple: true },
      ttl: { type: 'string' },
      reason: { type: 'string' },
      methods: { type: 'string' },
      paths: { type: 'string' },
      hosts: { type: 'string' },
      limit: { type: 'string' },
      ops: { type: 'string' },
      window: { type: 'string' },
    },
  });
}

const PROCESS_IO: CtlIo = {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
};

/**
 * Runs `seglb ctl ARGS`.
 * @param argv - the arguments after `ctl`
 * @returns the exit code: 0 success, 1 API error or unreachable, 2 usage
 */
export async function ctl(argv: readonly string[], io: CtlIo = PROCESS_IO): Promise<number> {
  let prepared: { command: Command; args: string[]; values: Values; call: ApiCall } | 'help';
  try {
    prepared = prepare(argv);
  } catch (err) {
    if (isUsageError(err)) {
      io.stderr(`seglb ctl: ${err.message}\nRun "seglb ctl --help" for the usage.\n`);
      return 2;
    }
    throw err;
  }
  if (prepared === 'help') {
    io.stdout(CTL_USAGE);
    return 0;
  }
  const { command, args, values, call } = prepared;
  let base: URL;
  let token: string;
  let ca: string | undefined;
  try {
    base = adminUrl(values.admin ?? io.env.SEGLB_ADMIN ?? DEFAULT_ADMIN);
    token = readToken(values['token-file'], io);
    ca = values.ca === undefined ? undefined : readFileOrUsage(values.ca, '--ca');
  } catch (err) {
    if (isUsageError(err)) {
      io.stderr(`seglb ctl: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  let answer: { status: number; body: unknown };
  try {
    answer = await callApi(base, token, call, ca);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    io.stderr(`seglb ctl: cannot reach the admin API at ${base.origin}: ${e.code ?? e.message}\n`);
    return 1;
  }
  if (answer.status < 200 || answer.status > 299) {
    if (values.json) io.stdout(`${JSON.stringify(answer.body, null, 2)}\n`);
    io.stderr(formatApiError(answer.status, answer.body));
    return 1;
  }
  io.stdout(
    values.json
      ? `${JSON.stringify(answer.body, null, 2)}\n`
      : `${command.show(answer.body, args, values)}\n`,
  );
  return 0;
}

function prepare(
  argv: readonly string[],
): { command: Command; args: string[]; values: Values; call: ApiCall } | 'help' {
  // A token must never be a command-line argument: other users see it in ps and shell history.
  for (const a of argv) {
    if (a === '--token' || a.startsWith('--token=')) {
      throw usage('--token is not accepted (it would show in ps); use --token-file FILE or SEGLB_TOKEN');
    }
  }
  let parsed: ReturnType<typeof parseCtl>;
  try {
    parsed = parseCtl(argv);
  } catch (err) {
    throw usage((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help || positionals.length === 0 || positionals[0] === 'help') return 'help';
  const command =
    COMMANDS.find(
      (c) => c.words.length === 2 && c.words[0] === positionals[0] && c.words[1] === positionals[1],
    ) ?? COMMANDS.find((c) => c.words.length === 1 && c.words[0] === positionals[0]);
  if (!command) {
    const group = COMMANDS.filter((c) => c.words[0] === positionals[0] && c.words.length === 2);
    if (group.length > 0) {
      throw usage(
        `${positionals[0]} needs one of: ${group.map((c) => c.words[1]).join(', ')}${positionals[1] ? ` (got ${JSON.stringify(positionals[1])})` : ''}`,
      );
    }
    const names = [...new Set(COMMANDS.map((c) => c.words[0]))].join(', ');
    throw usage(`unknown command ${JSON.stringify(positionals[0])} (commands: ${names})`);
  }
  const name = command.words.join(' ');
  const args = positionals.slice(command.words.length);
  const variadic = command.args.at(-1)?.endsWith('...') ?? false;
  const fixed = variadic ? command.args.length - 1 : command.args.length;
  if (args.length < command.args.length || (!variadic && args.length > fixed)) {
    const expected = command.args.map((a) => a.replace('KIND', 'allow|deny')).join(' ');
    throw usage(
      `${name} takes ${expected ? `${expected}` : 'no arguments'}, got ${args.length ? args.map((a) => JSON.stringify(a)).join(' ') : 'none'}`,
    );
  }
  for (const [option, value] of Object.entries(values)) {
    if (value !== undefined && !GLOBAL_OPTIONS.includes(option) && !command.options.includes(option)) {
      throw usage(`--${option} is not an option of ${name}`);
    }
  }
  for (const h of values.header ?? []) {
    if (h.indexOf(':') <= 0) throw usage(`--header takes NAME:VALUE, got ${JSON.stringify(h)}`);
  }
  return { command, args, values, call: command.call(args, values) };
}

function adminUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usage(`--admin must be a URL like ${DEFAULT_ADMIN}, got ${JSON.stringify(text)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw usage(`--admin must be an http:// or https:// URL, got ${JSON.stringify(text)}`);
  return url;
}

/**
 * The bearer token: from --token-file (the first line that is not blank or a `#` comment, which
 * must be the token alone), else $SEGLB_TOKEN.
 */
function readToken(file: string | undefined, io: CtlIo): string {
  if (file === undefined) {
    const env = io.env.SEGLB_TOKEN?.trim();
    if (!env) throw usage('no token: pass --token-file FILE or set SEGLB_TOKEN');
    return env;
  }
  const text = readFileOrUsage(file, '--token-file');
  const line = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l !== '' && !l.startsWith('#'));
  if (line === undefined) throw usage(`--token-file ${file} holds no token`);
  if (/\s/.test(line)) {
    // Most likely the server's tokens file (NAME ROLE TOKEN): never guess which token to use.
    throw usage(
      `--token-file ${file}: expected the token alone on its line (the server's NAME ROLE TOKEN file is not a client token file)`,
    );
  }
  try {
    if ((statSync(file).mode & 0o077) !== 0)
      io.stderr(`seglb ctl: warning: ${file} is readable by other users; chmod 600 it\n`);
  } catch {
    // already read; the mode check is advice only
  }
  return line;
}

function readFileOrUsage(file: string, option: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw usage(`${option} ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/** One call to the admin API. @throws the socket error when it cannot be reached */
function callApi(
  base: URL,
  token: string,
  call: ApiCall,
  ca: string | undefined,
): Promise<{ status: number; body: unknown }> {
  const url = new URL(call.path, base);
  const body = call.body === undefined ? undefined : JSON.stringify(call.body);
  const options: RequestOptions & { ca?: string } = {
    method: call.method,
    headers: {
      authorization: `Bearer ${token}`,
      accept: 'application/json',
      ...(body === undefined
        ? {}
        : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }),
    },
    timeout: CALL_TIMEOUT_MS,
  };
  if (ca !== undefined) options.ca = ca;
  const send = url.protocol === 'https:' ? tlsRequest : plainRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, options, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          // not JSON (a proxy's error page?): shown as text
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', reject);
    req.end(body);
  });
}

function checkKind(kind: string | undefined): void {
  if (kind !== 'allow' && kind !== 'deny')
    throw usage(`the rule kind is allow or deny, got ${JSON.stringify(kind)}`);
}

/** `a,b, c` -> [a, b, c] */
function list(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

function headerMap(headers: readonly string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of headers ?? []) {
    const i = h.indexOf(':');
    out[h.slice(0, i).trim()] = h.slice(i + 1).trim();
  }
  return out;
}

const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `1500ms`, `90s`, `30m`, `1h`, `7d` -> milliseconds. @throws usage error */
export function parseDuration(text: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  const ms = m ? Number(m[1]) * (UNITS[m[2] as string] as number) : Number.NaN;
  if (!(ms > 0) || !Number.isFinite(ms))
    throw usage(`${option} takes a duration like 90s, 30m, 1h or 7d, got ${JSON.stringify(text)}`);
  return Math.round(ms);
}
