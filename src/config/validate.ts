// Semantic checks that a JSON Schema cannot express: addresses, CIDRs, references between
// sections, listener collisions, outbound subnets, TLS material, IP-set files and unions.

import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import { createSecureContext } from 'node:tls';
import { checkClusterConfig } from '../cluster/index.ts';
import { type ConfigIssue, type ErrorCode, SeglbError } from '../errors.ts';
import {
  type Cidr,
  cidrContains,
  type Endpoint,
  formatAddress,
  normaliseSource,
  parseAddress,
  parseCidr,
  parseCidrList,
  parseEndpoint,
} from '../net/index.ts';
import { type AdminToken, parseTokenFile } from './admin-tokens.ts';
import { didYouMean } from './did-you-mean.ts';
import { readRegularFile } from './read-file.ts';
import type { RuleConfig, SeglbConfig } from './types.ts';
import { checkPool, type PoolMaterial } from './validate-pools.ts';
import { formatKeyPath, type KeyPathStep } from './yaml-positions.ts';

/** TLS material of one HTTPS VIP certificate, read from files or the environment (never logged). */
export interface TlsMaterial {
  readonly cert: string;
  readonly key: string;
  /** SNI names (exact or `*.suffix`); empty for a certificate that only serves as the default. */
  readonly servernames: readonly string[];
}

/** What validation resolved while checking, handed on so nothing is read or parsed twice. */
export interface ResolvedExtras {
  /** Every IP set, unions expanded, as parsed CIDRs (both families mixed). */
  readonly ipsets: ReadonlyMap<string, readonly Cidr[]>;
  /** TLS material per HTTPS VIP, keyed `segment#vipIndex`. */
  readonly tls: ReadonlyMap<string, readonly TlsMaterial[]>;
  /** Each segment's parsed backend_subnets. */
  readonly backendSubnets: ReadonlyMap<string, readonly Cidr[]>;
  /** Admin API tokens (digests only), empty without `admin:`. */
  readonly adminTokens: readonly AdminToken[];
  /** Admin API certificate and key, when `admin.tls` is set (never logged). */
  readonly adminTls: { readonly cert: string; readonly key: string } | null;
  /** Per pool: the sticky-cookie key and backend CA bundle read from files or the environment. */
  readonly pools: ReadonlyMap<string, PoolMaterial>;
}

type IssueAt = (path: readonly KeyPathStep[], message: string, target?: 'key' | 'value') => ConfigIssue;

/**
 * What was cut out of a schema-invalid config before the semantic checks (see schema-prune.ts).
 * In such a config, list items that failed the schema (VIPs, rules, backends) are `null`.
 */
export interface SchemaInvalidNames {
  /** IP sets and pools that exist in the file but failed the schema: references to them are not reported. */
  readonly ipsets: ReadonlySet<string>;
  readonly pools: ReadonlySet<string>;
  /** The whole `ipsets:` / `pools:` section is unusable: no reference into it is reported. */
  readonly allIpsets: boolean;
  readonly allPools: boolean;
  /** Segments with a VIP cut out: checks that need all VIPs (tcp vs L7) are skipped. */
  readonly incompleteVips: ReadonlySet<string>;
  /** Segments whose backend_subnets were cut out: backends are not checked against them. */
  readonly incompleteSubnets: ReadonlySet<string>;
}

const NONE_INVALID: SchemaInvalidNames = {
  ipsets: new Set(),
  pools: new Set(),
  allIpsets: false,
  allPools: false,
  incompleteVips: new Set(),
  incompleteSubnets: new Set(),
};

/** Most errors reported per IP-set file; the rest are counted in one more issue. */
const MAX_IPSET_FILE_ERRORS = 20;

/** A rule host: DNS name (optionally `*.`-prefixed), IPv4 address or bracketed IPv6; no port. */
const RULE_HOST =
  /^(?:\*\.)?(?:[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?)*\.?$|^\[[0-9A-Fa-f:.]+\]$/;

/** True when `s` holds whitespace or a control character (code < 0x21 or 0x7f). */
function hasSpaceOrControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** An HTTP header name: an RFC 9110 token. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** The reserved source word meaning every IPv4 and IPv6 address. */
export const ANY_SOURCE = 'any';

/** True when a rule source names an IP set rather than a CIDR or address. */
export function isIpSetName(source: string): boolean {
  return source !== ANY_SOURCE && /^[A-Za-z][A-Za-z0-9_.-]*$/.test(source) && !source.includes(':');
}

/**
 * Runs every semantic check over a schema-valid config and collects all issues.
 * @param config - schema-valid config with defaults applied (not yet frozen)
 * @param issue - builds a positioned issue for a key path of the config file
 * @param invalid - IP sets and pools left out because they failed the schema (references to them
 *   are not reported)
 * @returns all issues (empty when valid) and the resolved extras
 */
export function checkSemantics(
  config: SeglbConfig,
  issue: IssueAt,
  invalid: SchemaInvalidNames = NONE_INVALID,
): { issues: ConfigIssue[]; extras: ResolvedExtras } {
  const issues: ConfigIssue[] = [];
  const ipsets = resolveIpSets(config, invalid, issues, issue);
  const sources: SourceContext = { ipsets, invalid, issues, issue };
  const backendSubnets = new Map<string, readonly Cidr[]>();
  const tls = new Map<string, readonly TlsMaterial[]>();
  const listeners = new ListenerRegistry(issues, issue);

  for (const [segName, seg] of Object.entries(config.segments)) {
    const base: KeyPathStep[] = ['segments', segName];
    const subnets: Cidr[] = [];
    seg.backend_subnets.forEach((text, i) => {
      const c = tryCidr(text, [...base, 'backend_subnets', i], issues, issue);
      if (c) subnets.push(c);
    });
    backendSubnets.set(segName, subnets);
    // With a bad subnet already reported, "backend outside the subnets" would be a guess.
    const subnetsComplete =
      subnets.length === seg.backend_subnets.length && !invalid.incompleteSubnets.has(segName);

    // Items that failed the schema are null (see SchemaInvalidNames); with VIPs missing, checks
    // that depend on the segment's protocols are skipped rather than guessed.
    const vipsComplete = !invalid.incompleteVips.has(segName) && seg.vips.every((v) => v);
    const httpLike = !vipsComplete || seg.vips.some((v) => v && v.protocol !== 'tcp');
    const tcpLike = seg.vips.some((v) => v?.protocol === 'tcp');
    seg.vips.forEach((vip, i) => {
      if (!vip) return;
      const path = [...base, 'vips', i];
      const ep = tryEndpoint(vip.listen, [...path, 'listen'], true, issues, issue);
      if (ep) {
        if (ep.family === 0)
          issues.push(issue([...path, 'listen'], 'a VIP must listen on an IP address, not a hostname'));
        else listeners.add(ep, vip.ipv6_only, [...path, 'listen'], `VIP of segment ${segName}`);
      }
      if (vip.protocol === 'https' && !vip.tls)
        issues.push(issue(path, 'protocol https needs a tls section'));
      if (vip.protocol !== 'https' && vip.tls)
        issues.push(issue([...path, 'tls'], `tls is only for protocol https, not ${vip.protocol}`, 'key'));
      if (vip.tls && vip.protocol === 'https') {
        const material = readTls(vip.tls.certificates, [...path, 'tls', 'certificates'], issues, issue);
        if (material) tls.set(`${segName}#${i}`, material);
      }
      vip.proxy_protocol?.trusted.forEach((src, j) => {
        checkSource(src, [...path, 'proxy_protocol', 'trusted', j], sources);
      });
    });

    const checkRules = (kind: 'allow' | 'deny', rules: readonly RuleConfig[]) => {
      rules.forEach((rule, i) => {
        if (!rule) return;
        const path = [...base, kind, i];
        rule.from.forEach((src, j) => {
          checkSource(src, [...path, 'from', j], sources);
        });
        const l7 = (['methods', 'paths', 'hosts', 'headers'] as const).filter((k) => rule[k] !== undefined);
        if (l7.length > 0 && tcpLike) {
          issues.push(
            issue(
              [...path, l7[0] as string],
              `L7 conditions (${l7.join(', ')}) need HTTP VIPs, but segment ${segName} has a tcp VIP`,
              'key',
            ),
          );
        }
        rule.paths?.forEach((p, j) => {
          if (hasSpaceOrControl(p)) {
            issues.push(
              issue(
                [...path, 'paths', j],
                'a path cannot contain spaces or control characters (requests with them are refused)',
              ),
            );
          } else if (p.indexOf('*') !== -1 && p.indexOf('*') !== p.length - 1) {
            issues.push(
              issue([...path, 'paths', j], 'only a trailing * (prefix match) is supported in paths'),
            );
          }
        });
        rule.hosts?.forEach((h, j) => {
          if (h.lastIndexOf('*') > 0 || (h.startsWith('*') && !h.startsWith('*.'))) {
            issues.push(
              issue(
                [...path, 'hosts', j],
                'a host is exact or starts with "*." (one leading wildcard label)',
              ),
            );
          } else if (!RULE_HOST.test(h)) {
            // Requests are matched on the Host name without port: a rule with a port, a space or an
            // empty label could never match, so it is refused rather than silently dead.
            issues.push(
              issue(
                [...path, 'hosts', j],
                `"${h}" is not a host name (no port, no spaces; e.g. api.example.com, *.example.com, 192.0.2.1, [2001:db8::1])`,
              ),
            );
          }
        });
        for (const name of Object.keys(rule.headers ?? {})) {
          if (!HEADER_NAME.test(name)) {
            issues.push(
              issue(
                [...path, 'headers', name],
                `"${name}" is not a valid header name (RFC 9110 token)`,
                'key',
              ),
            );
          }
        }
      });
      const names = new Map<string, number>();
      rules.forEach((rule, i) => {
        if (!rule?.name) return;
        const prev = names.get(rule.name);
        if (prev !== undefined)
          issues.push(
            issue([...base, kind, i, 'name'], `rule name "${rule.name}" is already used by ${kind}[${prev}]`),
          );
        names.set(rule.name, i);
      });
    };
    checkRules('allow', seg.allow);
    checkRules('deny', seg.deny);
    seg.trusted_proxies.forEach((src, j) => {
      checkSource(src, [...base, 'trusted_proxies', j], sources);
    });
    if (seg.trusted_proxies.length > 0 && !httpLike) {
      issues.push(
        issue(
          [...base, 'trusted_proxies'],
          'trusted_proxies (X-Forwarded-For) applies to HTTP VIPs only; use proxy_protocol on a tcp VIP',
          'key',
        ),
      );
    }

    if (typeof seg.pool !== 'string') continue; // failed the schema: already reported
    const pool = Object.hasOwn(config.pools, seg.pool) ? config.pools[seg.pool] : undefined;
    if (!pool) {
      if (invalid.allPools || invalid.pools.has(seg.pool)) continue; // already reported by the schema
      const known = Object.keys(config.pools);
      issues.push(
        issue(
          [...base, 'pool'],
          `pool "${seg.pool}" does not exist${didYouMean(seg.pool, known) || ` (pools: ${known.join(', ')})`}`,
        ),
      );
      continue;
    }
    if (!subnetsComplete) continue;
    pool.backends.forEach((b, i) => {
      if (!b) return;
      const ep = safeEndpoint(b.address);
      if (!ep || ep.family === 0) return; // hostnames are checked at dial time
      if (!subnets.some((s) => cidrContains(s, ep.host))) {
        issues.push(
          issue(
            ['pools', seg.pool, 'backends', i, 'address'],
            `backend ${b.address} is outside backend_subnets of segment ${segName} (${seg.backend_subnets.join(', ')})`,
          ),
        );
      }
    });
  }

  const poolMaterial = new Map<string, PoolMaterial>();
  for (const [poolName, pool] of Object.entries(config.pools)) {
    const material = checkPool(poolName, pool, issues, issue);
    if (material) poolMaterial.set(poolName, material);
    pool.backends.forEach((b, i) => {
      if (!b) return;
      const path = ['pools', poolName, 'backends', i, 'address'];
      const ep = tryEndpoint(b.address, path, false, issues, issue);
      if (ep && pool.demo) {
        if (ep.family === 0 || !isLoopback(ep.host))
          issues.push(issue(path, 'demo backends must be loopback IP addresses'));
        else listeners.add(ep, false, path, `demo backend of pool ${poolName}`);
      }
    });
  }
  let adminTokens: AdminToken[] = [];
  let adminTls: { cert: string; key: string } | null = null;
  if (config.admin) {
    const ep = tryEndpoint(config.admin.listen, ['admin', 'listen'], true, issues, issue);
    if (ep) listeners.add(ep, false, ['admin', 'listen'], 'the admin listener');
    // Bearer tokens in clear text over a network are as good as published: refuse unless asked for.
    if (ep && !config.admin.tls && !config.admin.allow_insecure_remote && !isLoopbackEndpoint(ep)) {
      issues.push(
        issue(
          ['admin', 'listen'],
          `the admin API would listen on non-loopback ${config.admin.listen} without TLS (bearer tokens in clear text); add admin.tls, listen on loopback, or set admin.allow_insecure_remote: true`,
        ),
      );
    }
    const tokensFile = config.admin.tokens_file;
    let text: string | undefined;
    try {
      text = readRegularFile(tokensFile, 'utf8');
    } catch (err) {
      issues.push(
        issue(
          ['admin', 'tokens_file'],
          `cannot read ${tokensFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        ),
      );
    }
    if (text !== undefined) {
      const parsed = parseTokenFile(text);
      adminTokens = parsed.tokens;
      for (const e of parsed.errors) {
        issues.push({
          file: tokensFile,
          line: e.line,
          col: e.col,
          keyPath: 'admin.tokens_file',
          message: e.message,
        });
      }
      if (parsed.errors.length === 0 && parsed.tokens.length === 0) {
        issues.push(
          issue(['admin', 'tokens_file'], `${tokensFile} holds no token: nobody could use the admin API`),
        );
      }
    }
    // The state and audit files are read back at start: a device or FIFO there (/dev/stdout,
    // /dev/zero) would block start-up or read without end.
    for (const key of ['state_file', 'audit_file'] as const) {
      const path = config.admin[key];
      let st: ReturnType<typeof statSync> | undefined;
      try {
        st = typeof path === 'string' ? statSync(path, { throwIfNoEntry: false }) : undefined;
      } catch {
        st = undefined; // unreadable folder: the write will fail and be reported at run time
      }
      if (st !== undefined && !st.isFile())
        issues.push(issue(['admin', key], `${path} exists and is not a regular file`));
    }
    if (config.admin.tls) {
      try {
        const cert = readRegularFile(config.admin.tls.cert_file, 'utf8');
        const key = readRegularFile(config.admin.tls.key_file, 'utf8');
        createSecureContext({ cert, key });
        adminTls = { cert, key };
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        issues.push(issue(['admin', 'tls'], `admin certificate and key do not load: ${e.code ?? e.message}`));
      }
    }
  }
  // Read defensively: in a schema-invalid config (see schema-prune.ts) the section may be anything.
  const exempt = (config.limits as { per_source?: { exempt?: unknown } } | undefined)?.per_source?.exempt;
  if (Array.isArray(exempt)) {
    exempt.forEach((text: unknown, i) => {
      if (typeof text === 'string') tryCidr(text, ['limits', 'per_source', 'exempt', i], issues, issue);
    });
  }
  if (config.cluster) {
    const ep = tryEndpoint(config.cluster.listen, ['cluster', 'listen'], false, issues, issue);
    if (ep) listeners.add(ep, false, ['cluster', 'listen'], 'the cluster sync listener');
    config.cluster.peers.forEach((p, i) => {
      tryEndpoint(p, ['cluster', 'peers', i], false, issues, issue);
    });
    // Key files, certificates and timing order (src/cluster/config.ts); relative file names are
    // relative to the config file, whose path every positioned issue carries.
    const configDir = dirname(issue([], '').file);
    for (const p of checkClusterConfig(config.cluster, configDir)) {
      issues.push(p.code ? { ...issue(p.path, p.message), code: p.code } : issue(p.path, p.message));
    }
  }
  return { issues, extras: { ipsets, tls, backendSubnets, adminTokens, adminTls, pools: poolMaterial } };
}

/** Detects two listeners that cannot both bind: same address and port, or a wildcard overlapping. */
class ListenerRegistry {
  readonly #seen: { ep: Endpoint; v6only: boolean; what: string; path: readonly KeyPathStep[] }[] = [];
  readonly #issues: ConfigIssue[];
  readonly #issue: IssueAt;
  constructor(issues: ConfigIssue[], issue: IssueAt) {
    this.#issues = issues;
    this.#issue = issue;
  }
  add(written: Endpoint, v6only: boolean, path: readonly KeyPathStep[], what: string): void {
    if (written.port === 0) return; // ephemeral ports never collide
    const ep = canonicalEndpoint(written);
    for (const other of this.#seen) {
      if (other.ep.port === ep.port && bindsOverlap(ep, v6only, other.ep, other.v6only)) {
        const otherAt = this.#issue(other.path, '');
        this.#issues.push({
          ...this.#issue(
            path,
            `${what} ${formatEp(ep)} collides with ${other.what} ${formatEp(other.ep)} ` +
              `(${formatKeyPath(other.path)}, line ${otherAt.line})`,
          ),
          code: 'SEGLB_LISTENER_BIND',
        });
        return;
      }
    }
    this.#seen.push({ ep, v6only, what, path });
  }
}

/**
 * The endpoint with its address in canonical text (`[0::0]` -> `::`), and an IPv4-mapped IPv6
 * address (`[::ffff:127.0.0.1]`) as the IPv4 address it binds, so equal binds compare equal.
 */
function canonicalEndpoint(ep: Endpoint): Endpoint {
  if (ep.family !== 6) return ep;
  const host = normaliseSource(formatAddress(parseAddress(ep.host)));
  return host.includes(':') ? { host, port: ep.port, family: 6 } : { host, port: ep.port, family: 4 };
}

function formatEp(ep: Endpoint): string {
  return ep.family === 6 ? `[${ep.host}]:${ep.port}` : `${ep.host}:${ep.port}`;
}

/** Linux bind semantics: same address, or a wildcard of a family that covers the other address. */
function bindsOverlap(a: Endpoint, aV6only: boolean, b: Endpoint, bV6only: boolean): boolean {
  if (a.host === b.host) return true;
  const covers = (w: Endpoint, wV6only: boolean, o: Endpoint) =>
    (w.host === '0.0.0.0' && o.family === 4) || (w.host === '::' && (o.family === 6 || !wV6only));
  return covers(a, aV6only, b) || covers(b, bV6only, a);
}

function isLoopback(host: string): boolean {
  return host.startsWith('127.') || host === '::1';
}

/** A listen endpoint only reachable from this host (127.0.0.0/8, ::1, or the name localhost). */
function isLoopbackEndpoint(ep: Endpoint): boolean {
  if (ep.family === 0) return ep.host.toLowerCase() === 'localhost';
  return isLoopback(canonicalEndpoint(ep).host);
}

function safeEndpoint(text: string): Endpoint | undefined {
  try {
    return parseEndpoint(text);
  } catch {
    return undefined;
  }
}

function tryEndpoint(
  text: string,
  path: readonly KeyPathStep[],
  allowPortZero: boolean,
  issues: ConfigIssue[],
  issue: IssueAt,
): Endpoint | undefined {
  try {
    return parseEndpoint(text, allowPortZero);
  } catch (err) {
    issues.push(codedIssue(issue(path, messageOf(err)), err));
    return undefined;
  }
}

function tryCidr(
  text: string,
  path: readonly KeyPathStep[],
  issues: ConfigIssue[],
  issue: IssueAt,
): Cidr | undefined {
  try {
    return parseCidr(text);
  } catch (err) {
    issues.push(codedIssue(issue(path, messageOf(err)), err));
    return undefined;
  }
}

/** What checking a rule source needs: the resolved sets and where to put issues. */
interface SourceContext {
  readonly ipsets: ReadonlyMap<string, readonly Cidr[]>;
  readonly invalid: SchemaInvalidNames;
  readonly issues: ConfigIssue[];
  readonly issue: IssueAt;
}

function checkSource(src: string, path: readonly KeyPathStep[], ctx: SourceContext): void {
  if (src === ANY_SOURCE) return;
  if (isIpSetName(src)) {
    if (!ctx.ipsets.has(src)) unknownIpSet(src, path, ctx.ipsets.keys(), ctx.invalid, ctx.issues, ctx.issue);
    return;
  }
  tryCidr(src, path, ctx.issues, ctx.issue);
}

function unknownIpSet(
  name: string,
  path: readonly KeyPathStep[],
  known: Iterable<string>,
  invalid: SchemaInvalidNames,
  issues: ConfigIssue[],
  issue: IssueAt,
): void {
  if (invalid.allIpsets || invalid.ipsets.has(name)) return; // already reported by the schema
  issues.push({
    ...issue(path, `IP set "${name}" does not exist${didYouMean(name, known)}`),
    code: 'SEGLB_POLICY_UNKNOWN_IPSET',
  });
}

function resolveIpSets(
  config: SeglbConfig,
  invalid: SchemaInvalidNames,
  issues: ConfigIssue[],
  issue: IssueAt,
): Map<string, readonly Cidr[]> {
  const own = new Map<string, Cidr[]>();
  for (const [name, set] of Object.entries(config.ipsets)) {
    const list: Cidr[] = [];
    if (name === ANY_SOURCE) {
      issues.push(
        issue(
          ['ipsets', name],
          `"${ANY_SOURCE}" is reserved (a source meaning every address); rename the set`,
          'key',
        ),
      );
    }
    set.cidrs?.forEach((text, i) => {
      const c = tryCidr(text, ['ipsets', name, 'cidrs', i], issues, issue);
      if (c) list.push(c);
    });
    if (set.file) {
      let text: string | undefined;
      try {
        text = readRegularFile(set.file, 'utf8');
      } catch (err) {
        issues.push({
          ...issue(['ipsets', name, 'file'], `cannot read ${set.file}: ${errnoOf(err)}`),
          code: 'SEGLB_CONFIG_READ',
        });
      }
      if (text !== undefined) {
        // Positioned in the IP-set file itself: that is the file the operator has to edit.
        const parsed = parseCidrList(text, { maxErrors: MAX_IPSET_FILE_ERRORS });
        for (const c of parsed.cidrs) list.push(c);
        for (const e of parsed.errors) {
          issues.push({
            file: set.file,
            line: e.line,
            col: e.col,
            keyPath: formatKeyPath(['ipsets', name, 'file']),
            message: e.message,
            code: e.code,
          });
        }
        if (parsed.errorCount > parsed.errors.length) {
          issues.push(
            issue(
              ['ipsets', name, 'file'],
              `${parsed.errorCount - parsed.errors.length} more invalid lines in ${set.file}`,
            ),
          );
        }
      }
    }
    own.set(name, list);
  }
  const resolved = new Map<string, readonly Cidr[]>();
  const visiting = new Set<string>();
  const expand = (name: string, path: readonly KeyPathStep[]): readonly Cidr[] => {
    const done = resolved.get(name);
    if (done) return done;
    if (visiting.has(name)) {
      const chain = [...visiting, name];
      const cycle = chain.slice(chain.indexOf(name)).join(' -> ');
      issues.push({
        ...issue(path, `IP-set union cycle: ${cycle}`),
        code: 'SEGLB_POLICY_IPSET_CYCLE',
      });
      return [];
    }
    visiting.add(name);
    const out = [...(own.get(name) ?? [])];
    config.ipsets[name]?.union?.forEach((member, i) => {
      const memberPath = ['ipsets', name, 'union', i];
      if (!own.has(member)) unknownIpSet(member, memberPath, own.keys(), invalid, issues, issue);
      else for (const c of expand(member, memberPath)) out.push(c);
    });
    visiting.delete(name);
    resolved.set(name, out);
    return out;
  };
  for (const name of own.keys()) expand(name, ['ipsets', name]);
  return resolved;
}

function readTls(
  certs: readonly {
    cert_file: string;
    key_file?: string;
    key_env?: string;
    servernames?: readonly string[];
  }[],
  base: readonly KeyPathStep[],
  issues: ConfigIssue[],
  issue: IssueAt,
): TlsMaterial[] | undefined {
  const out: TlsMaterial[] = [];
  let ok = true;
  certs.forEach((c, i) => {
    const path = [...base, i];
    if ((c.key_file === undefined) === (c.key_env === undefined)) {
      const why =
        c.key_file === undefined ? 'the private key is missing' : 'both key_file and key_env are given';
      issues.push(
        issue(path, `${why}: give exactly one of key_file or key_env (private keys are never inline)`),
      );
      ok = false;
      return;
    }
    let cert: string;
    let key: string | undefined;
    try {
      cert = readRegularFile(c.cert_file, 'utf8');
    } catch (err) {
      issues.push(issue([...path, 'cert_file'], `cannot read ${c.cert_file}: ${errnoOf(err)}`));
      ok = false;
      return;
    }
    if (c.key_file) {
      try {
        key = readRegularFile(c.key_file, 'utf8');
      } catch (err) {
        issues.push(issue([...path, 'key_file'], `cannot read ${c.key_file}: ${errnoOf(err)}`));
        ok = false;
        return;
      }
    } else {
      key = process.env[c.key_env as string];
      if (!key) {
        issues.push(issue([...path, 'key_env'], `environment variable ${c.key_env} is not set`));
        ok = false;
        return;
      }
    }
    try {
      createSecureContext({ cert, key });
    } catch (err) {
      // The message of a PEM parse failure names no key material, so it is safe to show.
      const source = c.key_file ? `key_file ${c.key_file}` : `key from environment variable ${c.key_env}`;
      issues.push(issue(path, `certificate and ${source} do not load: ${(err as Error).message}`));
      ok = false;
      return;
    }
    out.push({ cert, key, servernames: c.servernames ?? [] });
  });
  return ok ? out : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof SeglbError ? err.message : String(err);
}

/** The issue with the thrown error's code attached, when it is one of seglb's. */
function codedIssue(base: ConfigIssue, err: unknown): ConfigIssue {
  const code: ErrorCode | undefined = err instanceof SeglbError ? err.code : undefined;
  return code ? { ...base, code } : base;
}

function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}
