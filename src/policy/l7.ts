// The L7 conditions of one rule (methods, paths, hosts, headers), compiled into sets and prefix
// lists once so that matching a request is a few lookups. All listed conditions must hold (AND);
// within one condition any listed value may match (OR), as in Envoy's RBAC permission and/or sets.

import type { RuleConfig } from '../config/types.ts';

/** The request attributes L7 rules look at. */
export interface RequestAttributes {
  /** Uppercase method, e.g. `GET`. */
  readonly method: string;
  /** Path without the query string, e.g. `/api/users`. */
  readonly path: string;
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

  private constructor(rule: RuleConfig) {
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

  /** @returns a matcher, or null when the rule has no L7 condition (it applies to whole connections). */
  static fromRule(rule: RuleConfig): L7Matcher | null {
    if (!rule.methods && !rule.paths && !rule.hosts && !rule.headers) return null;
    return new L7Matcher(rule);
  }

  /** True when the request meets every condition of the rule. */
  matches(req: RequestAttributes): boolean {
    if (this.#methods !== null && !this.#methods.has(req.method)) return false;
    if (this.#hasPaths && !this.#matchPath(req.path)) return false;
    if (this.#hasHosts && !this.#matchHost(req.host)) return false;
    for (let i = 0; i < this.#headers.length; i++) {
      const [name, want] = this.#headers[i] as readonly [string, string];
      const got = req.headers[name];
      if (got === undefined) return false;
      if (want === '*') continue;
      if (typeof got === 'string' ? got !== want : !got.includes(want)) return false;
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
    if (this.#exactHosts?.has(host)) return true;
    for (let i = 0; i < this.#hostSuffixes.length; i++) {
      const suffix = this.#hostSuffixes[i] as string;
      if (host.length > suffix.length && host.endsWith(suffix)) return true;
    }
    return false;
  }
}

/**
 * The path L7 rules are judged on, so that `/a/../admin`, `//admin` or `/%61dmin` cannot slip past
 * a rule about `/admin`: query and fragment dropped, percent-encoded unreserved characters decoded
 * (RFC 3986 §6.2.2.2), repeated slashes merged (Envoy's merge_slashes), dot segments removed
 * (RFC 3986 §5.2.4). The request is still forwarded with its original target.
 * @param target - the request target as received (origin-form, or absolute-form)
 * @returns a path starting with `/` (`*` stays `*`)
 */
export function normaliseRequestPath(target: string): string {
  let path = target;
  if (path.charCodeAt(0) !== 47 /* / */) {
    if (path === '*') return path;
    const scheme = path.indexOf('://');
    const slash = scheme >= 0 ? path.indexOf('/', scheme + 3) : -1;
    path = slash >= 0 ? path.slice(slash) : '/';
  }
  const q = path.indexOf('?');
  if (q >= 0) path = path.slice(0, q);
  const h = path.indexOf('#');
  if (h >= 0) path = path.slice(0, h);
  if (path.indexOf('%') === -1 && path.indexOf('//') === -1 && path.indexOf('/.') === -1) return path;
  path = path.replace(/%([0-9A-Fa-f]{2})/g, (m, hex: string) => {
    const c = Number.parseInt(hex, 16);
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
  path = path.replace(/\/{2,}/g, '/');
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
