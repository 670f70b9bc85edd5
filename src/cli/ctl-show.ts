// Text output of `seglb ctl`: each admin API answer (shapes in docs/api.md) as a few aligned,
// human-readable lines, and API errors with their code and positioned issues.

import { type ConfigIssue, formatConfigIssue } from '../errors.ts';

/** Answer of a policy change (rules, mode, IP-set entries, batched changes). */
export interface ChangeAnswer {
  readonly version: number;
  readonly hash: string;
  /** false: live but not written to the state file; null: no state file. */
  readonly persisted?: boolean | null;
}

interface DriftAnswer {
  readonly op: Record<string, unknown>;
  readonly error: string;
}

export interface StatusAnswer {
  readonly version: string;
  /** The cluster sync channel (src/cluster ClusterStatus, the fields shown), or null without one. */
  readonly cluster?: {
    nodeId: string;
    listen: string;
    policy: { agreed: boolean; divergent: readonly string[] };
    peers: readonly {
      nodeId: string | null;
      address: string | null;
      listen: string | null;
      state: string;
      lastSeenMsAgo: number | null;
      rttMs: number | null;
      policyVersion: string | null;
    }[];
  } | null;
  readonly uptimeMs: number;
  readonly policy: { version: number; hash: string; runtimeOps: number; drift: number };
  readonly state: { file: string | null; writeError: string | null; auditWriteFailures: number };
  readonly segments: readonly {
    name: string;
    mode: string;
    rules: number;
    prefixes: number;
    verdicts: { allowed: number; denied: number; auditDenied: number };
    counters?: { requests?: number };
  }[];
  readonly vips: readonly { segment: string; protocol: string; address: string; port: number }[];
  readonly pools: readonly {
    name: string;
    algorithm: string;
    panic: boolean;
    queued: number;
    backends: readonly {
      name: string;
      address: string;
      adminState: string;
      health: string;
      clusterHealth: string | null;
      ejectedUntil: number | null;
      usable: boolean;
      inflight: number;
      served: number;
      failures: number;
    }[];
  }[];
  readonly quarantine: { entries: number; denied: number };
}

interface ExplainedRule {
  readonly name: string;
  readonly kind: string;
  readonly where: string;
  readonly l7: boolean;
}

export interface ExplainAnswer {
  readonly segment: string;
  readonly mode: string;
  readonly source: string;
  readonly verdict: string;
  readonly enforced: boolean;
  readonly connection: string;
  readonly reason: string;
  readonly decidingRule: ExplainedRule | null;
  readonly matchedRules: readonly ExplainedRule[];
}

export interface QuarantineEntryAnswer {
  readonly cidr: string;
  readonly expiresAt: string | null;
  readonly reason: string;
}

export interface QuarantineAddAnswer {
  readonly entry: QuarantineEntryAnswer;
  readonly connectionsClosed: number;
  readonly persisted?: boolean | null;
}

export interface IpSetAnswer {
  readonly name: string;
  readonly prefixes: number;
  readonly cidrs: readonly string[];
  readonly file: string | null;
  readonly union: readonly string[];
}

export interface ReloadAnswer extends ChangeAnswer {
  readonly drift: readonly DriftAnswer[];
}

export interface DiffAnswer {
  readonly file: string;
  readonly runtimeOps: readonly Record<string, unknown>[];
  readonly drift: readonly DriftAnswer[];
  readonly persistedTo: string | null;
}

export interface AuditAnswer {
  readonly time: string;
  readonly actor: string;
  readonly action: string;
  readonly change: unknown;
  readonly oldVersion: number;
  readonly newVersion: number;
}

export interface LintAnswer {
  readonly segment: string;
  readonly rule: string;
  readonly kind: string;
  readonly message: string;
}

interface SourceCount {
  readonly source: string;
  readonly connections: number;
}

export interface SimulateAnswer {
  readonly windowMs: number;
  readonly impact: readonly {
    segment: string;
    sourcesReplayed: number;
    newlyDenied: readonly SourceCount[];
    newlyAllowed: readonly SourceCount[];
    connectionsNewlyDenied: number;
    connectionsNewlyAllowed: number;
  }[];
  readonly lint: readonly LintAnswer[];
}

/** `seglb ctl: CODE (HTTP n): message` and one line per positioned issue (`file:line:col key: msg`). */
export function formatApiError(status: number, body: unknown): string {
  const err = (body as { error?: { code?: string; message?: string; issues?: ConfigIssue[] } } | undefined)
    ?.error;
  if (!err)
    return `seglb ctl: HTTP ${status}: ${clip(typeof body === 'string' ? body : JSON.stringify(body), 300)}\n`;
  const lines = [`seglb ctl: ${err.code ?? 'ERROR'} (HTTP ${status}): ${err.message ?? ''}`];
  for (const issue of err.issues ?? []) lines.push(`  ${formatConfigIssue(issue)}`);
  return `${lines.join('\n')}\n`;
}

/** `policy version 8 (hash ...)`, with a warning when the change was not persisted. */
export function applied(b: ChangeAnswer): string {
  return `policy version ${b.version} (hash ${b.hash})${persistWarning(b)}`;
}

export function persistWarning(b: { persisted?: boolean | null }): string {
  return b.persisted === false
    ? '\nwarning: the change is live but was NOT written to the state file (see "seglb ctl status"); it will not survive a restart'
    : '';
}

/** Milliseconds as `1h 5m`, `42s`, `350ms` (two largest units). */
export function humanDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  const parts = [d ? `${d}d` : '', h ? `${h}h` : '', m ? `${m}m` : '', s ? `${s}s` : ''].filter(Boolean);
  return parts.slice(0, 2).join(' ') || '0s';
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Aligned columns with a header row. */
function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] as number)))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

function indent(text: string, n = 2): string {
  const pad = ' '.repeat(n);
  return text
    .split('\n')
    .map((l) => pad + l)
    .join('\n');
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** One runtime operation in words. */
export function describeOp(op: Record<string, unknown>): string {
  const rule = op.rule as Record<string, unknown> | undefined;
  const words = (v: unknown) => (Array.isArray(v) ? v.join(', ') : String(v));
  switch (op.op) {
    case 'add_rule': {
      const l7 = ['methods', 'paths', 'hosts']
        .filter((k) => rule?.[k] !== undefined)
        .map((k) => ` ${k} ${words(rule?.[k])}`)
        .join('');
      return `add ${op.kind} rule "${rule?.name}" to segment ${op.segment}: from ${words(rule?.from)}${l7}`;
    }
    case 'remove_rule':
      return `remove ${op.kind} rule "${op.name}" from segment ${op.segment}`;
    case 'set_mode':
      return `set segment ${op.segment} to ${op.mode}`;
    case 'add_ipset_entries':
      return `add ${words(op.cidrs)} to IP set ${op.ipset}`;
    case 'remove_ipset_entries':
      return `remove ${words(op.cidrs)} from IP set ${op.ipset}`;
    default:
      return JSON.stringify(op);
  }
}

export function showStatus(b: StatusAnswer): string {
  const lines = [
    `seglb ${b.version}, up ${humanDuration(b.uptimeMs)}`,
    `policy version ${b.policy.version} (hash ${b.policy.hash}); ${plural(b.policy.runtimeOps, 'runtime change')}, ${b.policy.drift} drift`,
    b.state.file === null
      ? 'state file: none (runtime changes are not persisted)'
      : `state file: ${b.state.file} (${b.state.writeError === null ? 'ok' : `WRITE ERROR: ${b.state.writeError}`})`,
  ];
  if (b.state.auditWriteFailures > 0)
    lines.push(`audit trail: ${plural(b.state.auditWriteFailures, 'entry', 'entries')} could not be written`);
  lines.push('segments:');
  lines.push(
    indent(
      table(
        ['NAME', 'MODE', 'RULES', 'PREFIXES', 'ALLOWED', 'DENIED', 'AUDIT-DENIED', 'REQUESTS'],
        b.segments.map((s) => [
          s.name,
          s.mode,
          String(s.rules),
          String(s.prefixes),
          String(s.verdicts.allowed),
          String(s.verdicts.denied),
          String(s.verdicts.auditDenied),
          String(s.counters?.requests ?? 0),
        ]),
      ),
    ),
  );
  lines.push('VIPs:');
  lines.push(
    indent(
      table(
        ['SEGMENT', 'PROTOCOL', 'ADDRESS'],
        b.vips.map((v) => [
          v.segment,
          v.protocol,
          `${v.address.includes(':') ? `[${v.address}]` : v.address}:${v.port}`,
        ]),
      ),
    ),
  );
  lines.push('pools:');
  for (const p of b.pools) {
    lines.push(
      `  ${p.name} (${p.algorithm})${p.panic ? ' PANIC' : ''}${p.queued > 0 ? `, ${p.queued} queued` : ''}`,
    );
    lines.push(
      indent(
        table(
          ['BACKEND', 'ADDRESS', 'STATE', 'HEALTH', 'USABLE', 'INFLIGHT', 'SERVED', 'FAILURES'],
          p.backends.map((x) => [
            x.name,
            x.address,
            x.adminState,
            showHealth(x),
            x.usable ? 'yes' : 'no',
            String(x.inflight),
            String(x.served),
            String(x.failures),
          ]),
        ),
        4,
      ),
    );
  }
  lines.push(
    `quarantine: ${plural(b.quarantine.entries, 'entry', 'entries')}, ${plural(b.quarantine.denied, 'connection')} refused`,
  );
  const c = b.cluster;
  if (c === null || c === undefined) lines.push('cluster: not configured');
  else {
    lines.push(
      `cluster: node ${c.nodeId} on ${c.listen}; policy ${c.policy.agreed ? 'agreed' : `DIVERGENT on ${c.policy.divergent.join(', ')}`}`,
    );
    lines.push(
      indent(
        table(
          ['PEER', 'ADDRESS', 'STATE', 'LAST SEEN', 'RTT', 'POLICY'],
          c.peers.map((p) => [
            p.nodeId ?? '-',
            p.listen ?? p.address ?? '-',
            p.state,
            p.lastSeenMsAgo === null ? 'never' : `${Math.round(p.lastSeenMsAgo)} ms ago`,
            p.rttMs === null ? '-' : `${p.rttMs.toFixed(1)} ms`,
            p.policyVersion ?? '-',
          ]),
        ),
      ),
    );
  }
  return lines.join('\n');
}

/** A backend's health: this node's verdict, the cluster's majority when it differs, an ejection. */
function showHealth(b: {
  health: string;
  clusterHealth: string | null;
  ejectedUntil: number | null;
}): string {
  const cluster =
    b.clusterHealth !== null && b.clusterHealth !== b.health ? ` (cluster: ${b.clusterHealth})` : '';
  return `${b.health}${cluster}${b.ejectedUntil !== null ? ', ejected' : ''}`;
}

/** The same lines as `seglb explain`. */
export function showExplain(e: ExplainAnswer): string {
  const rule = (r: ExplainedRule) =>
    `${r.kind} ${r.name}${r.l7 ? ' (L7)' : ''}${r.where ? ` at ${r.where}` : ''}`;
  return [
    `segment ${e.segment} (mode ${e.mode}), source ${e.source}`,
    `verdict: ${e.verdict.toUpperCase()}${e.enforced ? '' : ' (audit mode: logged, not enforced)'}  [connection: ${e.connection}]`,
    `reason: ${e.reason}`,
    `deciding rule: ${e.decidingRule ? rule(e.decidingRule) : 'none (default deny)'}`,
    `matched rules (${e.matchedRules.length}):`,
    ...e.matchedRules.map((r) => `  ${rule(r)}`),
  ].join('\n');
}

export function showQuarantine(entries: readonly QuarantineEntryAnswer[], now = Date.now()): string {
  if (entries.length === 0) return 'no quarantine entries';
  const until = (iso: string) => {
    const left = Date.parse(iso) - now;
    return left > 0 ? `in ${humanDuration(left)}` : 'expired';
  };
  return table(
    ['CIDR', 'EXPIRES', 'REASON'],
    entries.map((e) => [e.cidr, e.expiresAt ? `${e.expiresAt} (${until(e.expiresAt)})` : 'never', e.reason]),
  );
}

export function showQuarantineAdded(b: QuarantineAddAnswer): string {
  const expiry = b.entry.expiresAt ? `until ${b.entry.expiresAt}` : 'with no expiry';
  return `quarantined ${b.entry.cidr} ${expiry} (${b.entry.reason}); ${plural(b.connectionsClosed, 'open connection')} closed${persistWarning(b)}`;
}

export function showIpSets(sets: readonly IpSetAnswer[]): string {
  if (sets.length === 0) return 'no IP sets';
  return table(
    ['NAME', 'PREFIXES', 'INLINE', 'FILE', 'UNION'],
    sets.map((s) => [
      s.name,
      String(s.prefixes),
      s.cidrs.join(',') || '-',
      s.file ?? '-',
      s.union.join(',') || '-',
    ]),
  );
}

export function showReload(b: ReloadAnswer): string {
  const lines = [`reloaded: ${applied(b)}`];
  if (b.drift.length > 0) {
    lines.push(`drift (runtime changes that no longer apply to the file, dropped): ${b.drift.length}`);
    for (const d of b.drift) lines.push(`  ${describeOp(d.op)}: ${d.error}`);
  }
  return lines.join('\n');
}

export function showDiff(b: DiffAnswer): string {
  const lines = [
    `config file: ${b.file}`,
    `runtime changes on top of it: ${b.runtimeOps.length}${b.persistedTo ? ` (kept in ${b.persistedTo})` : ' (not persisted)'}`,
  ];
  b.runtimeOps.forEach((op, i) => {
    lines.push(`  ${i + 1}. ${describeOp(op)}`);
  });
  lines.push(`drift (no longer applies to the file, not in force): ${b.drift.length || 'none'}`);
  for (const d of b.drift) lines.push(`  ${describeOp(d.op)}: ${d.error}`);
  return lines.join('\n');
}

export function showAudit(entries: readonly AuditAnswer[]): string {
  if (entries.length === 0) return 'no changes recorded';
  return entries
    .map((e) => {
      const v = e.oldVersion === e.newVersion ? `v${e.newVersion}` : `v${e.oldVersion} -> v${e.newVersion}`;
      return `${e.time}  ${e.actor}  ${e.action}  ${v}  ${clip(JSON.stringify(e.change), 160)}`;
    })
    .join('\n');
}

export function showLint(findings: readonly LintAnswer[]): string {
  if (findings.length === 0) return 'lint: no findings';
  return [
    `lint: ${plural(findings.length, 'finding')}`,
    ...findings.map((f) => `  ${f.segment}/${f.rule}: ${f.kind}: ${f.message}`),
  ].join('\n');
}

export function showSimulate(b: SimulateAnswer): string {
  const lines = [`replaying the sources seen in the last ${humanDuration(b.windowMs)}:`];
  const who = (xs: readonly SourceCount[]) =>
    xs.length === 0 ? 'none' : xs.map((x) => `${x.source} (${x.connections})`).join(', ');
  for (const s of b.impact) {
    lines.push(`  segment ${s.segment}: ${plural(s.sourcesReplayed, 'source')} replayed`);
    lines.push(
      `    newly denied: ${who(s.newlyDenied)}${s.newlyDenied.length ? ` = ${plural(s.connectionsNewlyDenied, 'connection')}` : ''}`,
    );
    lines.push(
      `    newly allowed: ${who(s.newlyAllowed)}${s.newlyAllowed.length ? ` = ${plural(s.connectionsNewlyAllowed, 'connection')}` : ''}`,
    );
  }
  lines.push(showLint(b.lint).replace(/^lint:/, 'lint of the candidate:'));
  return lines.join('\n');
}
