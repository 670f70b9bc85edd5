// What a VIP listener needs from the current runtime snapshot, gathered per VIP so the accept
// path does one property read instead of map lookups. Built by runtime.ts for every snapshot.

import type { TlsMaterial } from '../config/index.ts';
import type {
  ForwardedHeadersConfig,
  LimitsConfig,
  SegmentConfig,
  TimeoutsConfig,
  VipConfig,
} from '../config/types.ts';
import type { SegmentPolicy, SourceSet } from '../policy/index.ts';
import type { BackendPool } from '../pools/index.ts';

/** One segment as the data path sees it in one snapshot. */
export interface SegmentRuntime {
  readonly name: string;
  readonly config: SegmentConfig;
  readonly policy: SegmentPolicy;
  readonly pool: BackendPool;
  /** Compiled trusted_proxies (X-Forwarded-For trust), or null when none are configured. */
  readonly xffTrusted: SourceSet | null;
  readonly forwarded: ForwardedHeadersConfig;
  /** Compiled backend_subnets (outbound check). */
  readonly backendSubnets: SourceSet;
  /** Counters of the data path for this segment. */
  readonly counters: SegmentCounters;
}

/** Plain-number counters (exported by observers, never label lookups per request). */
export interface SegmentCounters {
  requests: number;
  /** Responses seglb generated itself, by status. */
  responses403: number;
  responses502: number;
  responses503: number;
  responses504: number;
  retries: number;
  outboundDenied: number;
  tcpConnections: number;
}

/** One VIP's view of a snapshot. `l7` fields are null when unused, so shapes stay stable. */
export interface VipContext {
  readonly segment: SegmentRuntime;
  readonly vip: VipConfig;
  /** Peers allowed to send a PROXY header, or null when the VIP has no proxy_protocol. */
  readonly proxyTrusted: SourceSet | null;
  readonly timeouts: TimeoutsConfig;
  readonly limits: LimitsConfig;
  /** Certificates of an HTTPS VIP (first is the default), null otherwise. */
  readonly tls: readonly TlsMaterial[] | null;
}

/** A fresh zeroed counters object. */
export function newSegmentCounters(): SegmentCounters {
  return {
    requests: 0,
    responses403: 0,
    responses502: 0,
    responses503: 0,
    responses504: 0,
    retries: 0,
    outboundDenied: 0,
    tcpConnections: 0,
  };
}
