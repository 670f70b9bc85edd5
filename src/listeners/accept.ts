// The accept-time verdict hook shared by HTTP, HTTPS and TCP VIPs: normalise the source, read a
// PROXY header from trusted peers, check quarantine and the segment policy, then reset the socket
// (no byte read) or hand it to the protocol layer. Runs before the protocol sees the socket.

import type { Server, Socket } from 'node:net';
import { normaliseSource } from '../net/address.ts';
import {
  FLOW_ALLOW,
  FLOW_AUDIT,
  FLOW_DENY,
  type Observer,
  RULE_QUARANTINE,
  RULE_TRUSTED_PROXY,
} from '../observe/index.ts';
import type { Logger, LogRateLimiter } from '../observe/log.ts';
import type { ObservedSources } from '../observe/sources.ts';
import {
  type Quarantine,
  type SegmentPolicy,
  VERDICT_DENY,
  VERDICT_L7,
  type VerdictRecord,
} from '../policy/index.ts';
import type { SegmentRuntime, VipContext } from './context.ts';
import { readProxyHeader } from './proxy-protocol.ts';
import { type LimitRefusal, type SourceEntry, SourceLimiter } from './source-limits.ts';

/** Per-connection state, attached to the accepted socket (property `seglb`). */
export interface ConnectionState {
  /** The VIP context (and so the snapshot) the connection was accepted under. */
  readonly ctx: VipContext;
  /** Client address after normalisation and PROXY protocol (never `::ffff:`-prefixed). */
  readonly source: string;
  /** The source's verdict record. */
  readonly record: VerdictRecord;
  /** The policy that produced `record` (kept when `revoke: never` carries a connection across a swap). */
  readonly policy: SegmentPolicy;
  /** The peer is a trusted proxy: each request is judged on its X-Forwarded-For client. */
  readonly viaTrustedProxy: boolean;
  /** True when requests on this connection need an L7 verdict. */
  readonly judgeRequests: boolean;
}

/** Sockets carrying seglb's connection state (and their per-source entry, released at close). */
export type SeglbSocket = Socket & {
  seglb?: ConnectionState;
  seglbSource?: SourceEntry;
  /** Name of the backend a TCP connection was proxied to (for its flow record). */
  seglbBackend?: string;
};

/** Process-wide pieces the accept path needs (one per runtime, not per snapshot). */
export interface AcceptShared {
  readonly quarantine: Quarantine;
  readonly log: Logger;
  readonly denyLog: LogRateLimiter;
  /** Recent sources per segment (for `simulate`), bounded. */
  readonly observed: ObservedSources;
  /** Counters for refusals that are not a segment rule's. */
  readonly counters: {
    quarantineDenied: number;
    connectionLimitRefused: number;
    proxyHeaderInvalid: number;
    /** HTTP clients disconnected by timeouts.client_stall_ms (slow body, slow read). */
    clientStalled?: number;
    /** HTTP requests refused by request-checks.ts (version, framing, Host, target). */
    requestsRefused?: number;
  };
  /** Flow records, metrics counters and detectors (src/observe). */
  readonly observer: Observer;
  /**
   * Process-wide and per-source connection limits (source-limits.ts). Created by the first VIP when
   * the runtime did not supply one, so all VIPs of a runtime share it.
   */
  sourceLimits?: SourceLimiter;
}

/**
 * Installs the verdict hook on a server: it becomes the only 'connection' listener, and the
 * protocol's own listener (http's, tls's, or the TCP proxy's) runs only for allowed sockets.
 * @param server - a server not yet listening; `pauseOnConnect` is forced on so nothing is read
 *   before the verdict
 * @param getContext - returns the VIP's current context (swapped on reload)
 * @param shared - quarantine, logger and counters
 * @param handoff - the protocol layer's connection handler, called with the allowed socket (still paused)
 * @param active - the set of open client sockets of this VIP (for max_connections and shutdown)
 */
export function installVerdictHook(
  server: Server,
  getContext: () => VipContext,
  shared: AcceptShared,
  handoff: (socket: SeglbSocket) => void,
  active: Set<Socket>,
): void {
  (server as Server & { pauseOnConnect: boolean }).pauseOnConnect = true;
  server.removeAllListeners('connection');
  shared.sourceLimits ??= new SourceLimiter();
  const limiter = shared.sourceLimits;
  server.on('connection', (socket: SeglbSocket) => {
    const ctx = getContext();
    if (active.size >= ctx.limits.max_connections) {
      shared.counters.connectionLimitRefused++;
      socket.resetAndDestroy();
      return;
    }
    if (!limiter.admitTotal(ctx.limits)) {
      socket.resetAndDestroy();
      return;
    }
    active.add(socket);
    const acceptedAt = performance.now();
    socket.once('close', () => {
      active.delete(socket);
      const state = socket.seglb;
      if (state !== undefined) {
        shared.observer.connectionClosed(
          state,
          socket.seglbBackend ?? '',
          socket.bytesRead,
          socket.bytesWritten,
          performance.now() - acceptedAt,
        );
      }
      limiter.releaseTotal();
      const entry = socket.seglbSource;
      if (entry !== undefined) limiter.release(entry, ctx.limits, Date.now());
    });
    socket.on('error', ignoreError);
    const peer = normaliseSource(socket.remoteAddress ?? '');
    if (ctx.proxyTrusted?.has(peer)) {
      readProxyHeader(socket, ctx.timeouts.proxy_protocol_ms).then(
        (result) => {
          if (result.kind === 'invalid') {
            shared.counters.proxyHeaderInvalid++;
            shared.log.warn(
              { vip: ctx.vip.listen, peer, reason: result.reason },
              'invalid PROXY protocol header',
            );
            socket.destroy();
            return;
          }
          const source = result.kind === 'proxied' ? normaliseSource(result.sourceAddress) : peer;
          judge(socket, ctx, source, shared, handoff);
        },
        () => socket.destroy(),
      );
      return;
    }
    judge(socket, ctx, peer, shared, handoff);
  });
}

function ignoreError(): void {}

function judge(
  socket: SeglbSocket,
  ctx: VipContext,
  source: string,
  shared: AcceptShared,
  handoff: (socket: SeglbSocket) => void,
): void {
  const state = decideConnection(ctx, source, shared);
  if (state === null) {
    socket.resetAndDestroy();
    return;
  }
  // A trusted proxy speaks for many clients: only the process-wide cap applies to it.
  if (!state.viaTrustedProxy && shared.sourceLimits !== undefined) {
    const entry = shared.sourceLimits.admitSource(source, ctx.limits, Date.now());
    if (typeof entry === 'string') {
      logLimit(shared, ctx, source, entry);
      socket.resetAndDestroy();
      return;
    }
    if (entry !== null) socket.seglbSource = entry;
  }
  socket.seglb = state;
  handoff(socket);
}

/** A refusal by a per-source limit: logged like a deny (rate-limited by log.deny_log_per_second). */
function logLimit(shared: AcceptShared, ctx: VipContext, source: string, why: LimitRefusal): void {
  const suppressed = shared.denyLog.take(Date.now());
  if (suppressed < 0) return;
  const p = ctx.limits.per_source;
  shared.log.info(
    {
      event: 'limit',
      segment: ctx.segment.name,
      vip: ctx.vip.listen,
      source,
      limit: why,
      reason:
        why === 'source-rate'
          ? `more than ${p.rate_per_second} new connections per second (burst ${p.burst}) from this source`
          : `${p.max_connections} connections already open from this source`,
      suppressed,
    },
    'refused by a per-source limit',
  );
}

/**
 * The connection-level verdict for a source on a VIP: quarantine first, then trusted-proxy status,
 * then the segment policy. Counts and logs the decision. Used at accept, and again at the next
 * request when a keep-alive connection outlives a snapshot swap (so a new policy applies to it).
 * @param ctx - the VIP context to judge under
 * @param source - normalised client address
 * @param account - count and log the decision (false for a revocation sweep, which only asks)
 * @returns the connection state, or null when the connection must be refused (enforce mode)
 */
export function decideConnection(
  ctx: VipContext,
  source: string,
  shared: AcceptShared,
  account = true,
): ConnectionState | null {
  const seg = ctx.segment;
  const q = shared.quarantine.match(source);
  if (q !== undefined) {
    if (account) {
      shared.counters.quarantineDenied++;
      shared.observer.connection(ctx, source, FLOW_DENY, RULE_QUARANTINE, false);
      logDeny(shared, seg, ctx, source, 'quarantine', `quarantined: ${q.reason}`);
    }
    return null;
  }
  const policy = seg.policy;
  const firstSeen = account && shared.observed.record(seg.name, source);
  if (seg.xffTrusted?.has(source)) {
    if (account) shared.observer.connection(ctx, source, FLOW_ALLOW, RULE_TRUSTED_PROXY, firstSeen);
    return { ctx, source, record: policy.defaultRecord, policy, viaTrustedProxy: true, judgeRequests: true };
  }
  const record = policy.lookup(source);
  if (record.verdict === VERDICT_DENY) {
    if (account) {
      policy.count(false, record.rule);
      const flow = policy.mode === 'enforce' ? FLOW_DENY : FLOW_AUDIT;
      shared.observer.connection(ctx, source, flow, record.rule, firstSeen);
      logDeny(shared, seg, ctx, source, policy.ruleName(record.rule), 'source not allowed');
    }
    if (policy.mode === 'enforce') return null;
    return { ctx, source, record, policy, viaTrustedProxy: false, judgeRequests: false };
  }
  if (account) {
    if (record.verdict !== VERDICT_L7) policy.count(true, record.rule);
    shared.observer.connection(ctx, source, FLOW_ALLOW, record.rule, firstSeen);
  }
  return {
    ctx,
    source,
    record,
    policy,
    viaTrustedProxy: false,
    judgeRequests: record.verdict === VERDICT_L7,
  };
}

/**
 * Writes one deny log line, rate-limited by `log.deny_log_per_second`; when lines were suppressed,
 * the next line says how many.
 */
export function logDeny(
  shared: AcceptShared,
  seg: SegmentRuntime,
  ctx: VipContext,
  source: string,
  rule: string,
  reason: string,
  extra?: Record<string, unknown>,
): void {
  const suppressed = shared.denyLog.take(Date.now());
  if (suppressed < 0) return;
  const audit = seg.policy.mode === 'audit' && rule !== 'quarantine';
  shared.log.info(
    {
      event: audit ? 'audit-deny' : 'deny',
      segment: seg.name,
      vip: ctx.vip.listen,
      source,
      rule,
      reason,
      suppressed,
      ...extra,
    },
    audit ? 'would deny (audit mode)' : 'denied',
  );
}
