// The accept-time verdict hook shared by HTTP, HTTPS and TCP VIPs: normalise the source, read a
// PROXY header from trusted peers, check quarantine and the segment policy, then reset the socket
// (no byte read) or hand it to the protocol layer. Runs before the protocol sees the socket.

import type { Server, Socket } from 'node:net';
import { normaliseSource } from '../net/address.ts';
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

/** Sockets carrying seglb's connection state. */
export type SeglbSocket = Socket & { seglb?: ConnectionState };

/** Process-wide pieces the accept path needs (one per runtime, not per snapshot). */
export interface AcceptShared {
  readonly quarantine: Quarantine;
  readonly log: Logger;
  readonly denyLog: LogRateLimiter;
  /** Recent sources per segment (for `simulate`), bounded. */
  readonly observed: ObservedSources;
  /** Counters for refusals that are not a segment rule's. */
  readonly counters: { quarantineDenied: number; connectionLimitRefused: number; proxyHeaderInvalid: number };
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
  server.on('connection', (socket: SeglbSocket) => {
    const ctx = getContext();
    if (active.size >= ctx.limits.max_connections) {
      shared.counters.connectionLimitRefused++;
      socket.resetAndDestroy();
      return;
    }
    active.add(socket);
    socket.once('close', () => active.delete(socket));
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
  socket.seglb = state;
  handoff(socket);
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
      logDeny(shared, seg, ctx, source, 'quarantine', `quarantined: ${q.reason}`);
    }
    return null;
  }
  const policy = seg.policy;
  if (account) shared.observed.record(seg.name, source);
  if (seg.xffTrusted?.has(source)) {
    return { ctx, source, record: policy.defaultRecord, policy, viaTrustedProxy: true, judgeRequests: true };
  }
  const record = policy.lookup(source);
  if (record.verdict === VERDICT_DENY) {
    if (account) {
      policy.count(false, record.rule);
      logDeny(shared, seg, ctx, source, policy.ruleName(record.rule), 'source not allowed');
    }
    if (policy.mode === 'enforce') return null;
    return { ctx, source, record, policy, viaTrustedProxy: false, judgeRequests: false };
  }
  if (account && record.verdict !== VERDICT_L7) policy.count(true, record.rule);
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
