// The L7 conditions of one rule (methods, paths, hosts, headers), compiled into sets and prefix
// lists once so that matching a request is a few lookups. All listed conditions must hold (AND);
// within one condition any listed value may match (OR), as in Envoy's RBAC permission and/or sets.

import type { RuleConfig } from '../config/types.ts';

/** The request attributes L7 rules look at. */
export interface RequestAttributes {
  /** Uppercase method, e.g. `GET`. */
  readonly method: string;
  /** Path without the query string, normalised by normaliseRequestPath, e.g. `/api/users`. */
  readonly path: string;
  /**
   * The request target as received (query included), when the caller has it. A request whose target
   * differs from `path` once the query is dropped must be allowed under both forms: a backend that
   * does not normalise (`/admin/../public` reaches `/admin/*` routes in many frameworks) cannot then
   * be reached through an allow meant for the normalised path.
   */
  readonly rawPath?: string;
  /** Host header value, lowercase, without port; `''` when absent. */
  readonly host: string;
  /** Request headers with lowercase names (node's IncomingHttpHeaders shape). */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/** A compiled L7 condition set. Immutable; `matches` allocates nothing. */
export class L7Matcher {
  readonly #methods: ReadonlySet<string> | null;
  readonly #exactPaths: ReadonlySet<string> | null;
  readonly #pathPrefixes: readonly string[];
  readonly #exactHosts: ReadonlySet<string> | null;
  readonly #hostSuffixes: readonly string[];
  readonly #headers: readonly (readonly [string, string])[];
  readonly #hasPaths: boolean;
  readonly #hasHosts: boolean;
  readonly #deny: boolean;

  private constructor(rule: RuleConfig, kind: 'allow' | 'deny') {
    this.#deny = kind === 'deny';
    this.#methods = rule.methods ? new Set(rule.methods) : null;
    const paths = rule.paths ?? [];
    this.#exactPaths = new Set(paths.filter((p) => !p.endsWith('*')));
    this.#pathPrefixes = paths.filter((p) => p.endsWith('*')).map((p) => p.slice(0, -1));
    this.#hasPaths = paths.length > 0;
    const hosts = (rule.hosts ?? []).map((h) => h.toLowerCase());
    this.#exactHosts = new Set(hosts.filter((h) => !h.startsWith('*.')));
    // `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com` (as nginx server_name).
    this.#hostSuffixes = hosts.filter((h) => h.startsWith('*.')).map((h) => h.slice(1));
    this.#hasHosts = hosts.length > 0;
    this.#headers = Object.entries(rule.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v] as const);
  }

  /**
   * @param kind - a deny rule's header values also match one element of a repeated header (see matches)
   * @returns a matcher, or null when the rule has no L7 condition (it applies to whole connections).
   */
  static fromRule(rule: RuleConfig, kind: 'allow' | 'deny' = 'allow'): L7Matcher | null {
    if (!rule.methods && !rule.paths && !rule.hosts && !rule.headers) return null;
    return new L7Matcher(rule, kind);
  }

  /**
   * True when the request meets every condition of the rule.
   * A header value condition of an allow rule needs the whole (joined) value to be equal; a deny
   * rule's also matches when one comma-separated element is equal, because node joins a repeated
   * header (`x-debug: 1` twice becomes `1, 1`) while some backends read only the first one (Go's
   * Header.Get): a client must not escape a deny by repeating the header.
   * @param path - the path to judge (default `req.path`; judgeRequest passes the as-sent form too)
   */
  matches(req: RequestAttributes, path: string = req.path): boolean {
    if (this.#methods !== null && !this.#methods.has(req.method)) return false;
    if (this.#hasPaths && !this.#matchPath(path)) return false;
    if (this.#hasHosts && !this.#matchHost(req.host)) return false;
    for (let i = 0; i < this.#headers.length; i++) {
      const [name, want] = this.#headers[i] as readonly [string, string];
      const got = req.headers[name];
      if (got === undefined) return false;
      if (want === '*') continue;
      if (typeof got === 'string') {
        if (got !== want && !(this.#deny && hasListElement(got, want))) return false;
      } else if (!got.includes(want)) return false;
    }
    return true;
  }

  #matchPath(path: string): boolean {
    if (this.#exactPaths?.has(path)) return true;
    for (let i = 0; i < this.#pathPrefixes.length; i++) {
      if (path.startsWith(this.#pathPrefixes[i] as string)) return true;
    }
    return false;
  }

  #matchHost(host: string): boolean {
    // `example.com.` (fully qualified) names the same host as `example.com` (RFC 1034 §3.1).
    if (host.charCodeAt(host.length - 1) === 46 /* . */) host = host.slice(0, -1);
    if (this.#exactHosts?.has(host)) return true;
    for (let i = 0; i < this.#hostSuffixes.length; i++) {
      const suffix = this.#hostSuffixes[i] as string;
      if (host.length > suffix.length && host.endsWith(suffix)) return true;
    }
    return false;
  }
}

/** True when `want` equals one comma-separated, whitespace-trimmed element of `value` (no allocation). */
function hasListElement(value: string, want: string): boolean {
  let start = 0;
  while (start <= value.length) {
    let end = value.indexOf(',', start);
    if (end === -1) end = value.length;
    let a = start;
    let b = end;
    while (a < b && (value.charCodeAt(a) === 32 || value.charCodeAt(a) === 9)) a++;
    while (b > a && (value.charCodeAt(b - 1) === 32 || value.charCodeAt(b - 1) === 9)) b--;
    if (b - a === want.length && value.startsWith(want, a)) return true;
    start = end + 1;
  }
  return false;
}

/**
 * The request path as the client sent it: absolute-form reduced to its path, query and fragment
 * dropped, nothing decoded. judgeRequest judges this form too when it differs from the normalised one.
 * @param target - the request target as received
 * @returns a path starting with `/` (or `\` when the client sent one there; `*` stays `*`)
 */
export function requestPathAsSent(target: string): string {
  let path = target;
  if (path.charCodeAt(0) !== 47 /* / */) {
    if (path === '*') return path;
    const scheme = path.indexOf('://');
    let start = -1;
    if (scheme >= 0) {
      // The path starts at the first `/` (or `\`, a separator to WHATWG URL parsers) after the authority.
      for (let i = scheme + 3; i < path.length; i++) {
        const c = path.charCodeAt(i);
        if (c === 47 || c === 92) {
          start = i;
          break;
        }
        if (c === 63 /* ? */ || c === 35 /* # */) break;
      }
    }
    path = start >= 0 ? path.slice(start) : '/';
  }
  const q = path.indexOf('?');
  if (q >= 0) path = path.slice(0, q);
  const h = path.indexOf('#');
  if (h >= 0) path = path.slice(0, h);
  return path;
}

/**
 * The path L7 rules are judged on, so that `/a/../admin`, `//admin`, `/%61dmin` or `/a/..\admin`
 * cannot slip past a rule about `/admin`: query and fragment dropped, percent-encoded unreserved
 * characters decoded (RFC 3986 §6.2.2.2), other escapes uppercased and a stray `%` written `%25`,
 * `\`, `%5C` and `%2F` read as `/` (WHATWG URL parsers turn
 * `\` into `/`, and servers that decode before routing split on `%2F`, so neither may hide a
 * separator from the rules), repeated slashes merged (Envoy's merge_slashes), dot segments removed
 * (RFC 3986 §5.2.4). Idempotent. The request is still forwarded with its original target, so
 * judgeRequest also judges the as-sent form (RequestAttributes.rawPath).
 * @param target - the request target as received (origin-form, or absolute-form)
 * @returns a path starting with `/` (`*` stays `*`)
 */
export function normaliseRequestPath(target: string): string {
  let path = requestPathAsSent(target);
  if (path === '*') return path;
  if (
    path.indexOf('%') === -1 &&
    path.indexOf('//') === -1 &&
    path.indexOf('/.') === -1 &&
    path.indexOf('\\') === -1
  )
    return path;
  path = path.replace(/%([0-9A-Fa-f]{2})?/g, (m, hex: string | undefined) => {
    // A stray `%` becomes `%25`, so that decoding can never form a new escape with it (`%%61a` would
    // otherwise turn into `%aa` and decode again on a second pass).
    if (hex === undefined) return '%25';
    const c = Number.parseInt(hex, 16);
    if (c === 0x2f || c === 0x5c) return '/';
    const unreserved =
      (c >= 0x41 && c <= 0x5a) ||
      (c >= 0x61 && c <= 0x7a) ||
      (c >= 0x30 && c <= 0x39) ||
      c === 0x2d ||
      c === 0x2e ||
      c === 0x5f ||
      c === 0x7e;
    return unreserved ? String.fromCharCode(c) : m.toUpperCase();
  });
  path = path.replace(/[\\/]+/g, '/');
  const out: string[] = [];
  const parts = path.split('/');
  for (let i = 1; i < parts.length; i++) {
    const seg = parts[i] as string;
    if (seg === '.') {
      if (i === parts.length - 1) out.push('');
    } else if (seg === '..') {
      out.pop();
      if (i === parts.length - 1) out.push('');
    } else out.push(seg);
  }
  return `/${out.join('/')}`;
}

/**
 * The host name L7 rules compare: the Host header (or an explain --host) without port, lowercase,
 * without a trailing dot (`Admin.Example.com.:8443` -> `admin.example.com`, `[::1]:80` -> `[::1]`).
 * Live requests and explain both use this, so they cannot disagree.
 * @param host - Host header value, or undefined
 */
export function requestHostName(host: string | undefined): string {
  if (!host) return '';
  const end = host.startsWith('[') ? host.indexOf(']') + 1 : host.indexOf(':');
  let name = end > 0 ? host.slice(0, end) : host;
  if (name.length > 1 && name.charCodeAt(name.length - 1) === 46 /* . */) name = name.slice(0, -1);
  return name.toLowerCase();
}
