// The shape of a validated seglb configuration, mirroring schema/seglb.schema.json after defaults.
// Objects of these types are deep-frozen by loadConfig(); nothing mutates a config.

/** Log settings (`log:`). */
export interface LogConfig {
  readonly level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  readonly format: 'json' | 'pretty';
  /** Deny log lines per second per process (further denies are counted, not logged). */
  readonly deny_log_per_second: number;
}

/** Every timeout, in milliseconds (`timeouts:`). */
export interface TimeoutsConfig {
  readonly client_header_ms: number;
  readonly client_request_ms: number;
  readonly client_idle_ms: number;
  readonly backend_connect_ms: number;
  readonly backend_response_ms: number;
  readonly backend_idle_ms: number;
  readonly tcp_idle_ms: number;
  readonly proxy_protocol_ms: number;
  readonly shutdown_grace_ms: number;
  /** An HTTP client stalled mid-exchange (slow body, slow read) this long is disconnected; 0 = never. */
  readonly client_stall_ms: number;
}

/** Size and count limits (`limits:`). */
export interface LimitsConfig {
  /** Bytes. */
  readonly max_header_bytes: number;
  readonly max_connections: number;
  readonly backend_connections: number;
  /** Open client connections over all VIPs; 0 = no process-wide limit. */
  readonly max_connections_total: number;
  readonly per_source: PerSourceLimitsConfig;
}

/** Limits per client source (`limits.per_source`), enforced at accept. */
export interface PerSourceLimitsConfig {
  /** Open connections from one source; 0 = no limit. */
  readonly max_connections: number;
  /** Token-bucket refill: new connections per second; 0 = no rate limit. */
  readonly rate_per_second: number;
  /** Token-bucket size. */
  readonly burst: number;
  readonly ipv4_prefix: number;
  readonly ipv6_prefix: number;
  /** CIDRs exempt from the per-source limits. */
  readonly exempt: readonly string[];
}

/** One named IP set (`ipsets.NAME`). At least one of the three keys is present. */
export interface IpSetConfig {
  readonly cidrs?: readonly string[];
  /** Absolute path after loading (relative paths are resolved against the config file's folder). */
  readonly file?: string;
  readonly union?: readonly string[];
}

/** One allow or deny rule. L7 keys (methods, paths, hosts, headers) only on HTTP segments. */
export interface RuleConfig {
  readonly name?: string;
  readonly from: readonly string[];
  readonly methods?: readonly string[];
  readonly paths?: readonly string[];
  readonly hosts?: readonly string[];
  readonly headers?: Readonly<Record<string, string>>;
}

/** One TLS certificate of an HTTPS VIP. The key comes from key_file or key_env, never inline. */
export interface TlsCertificateConfig {
  readonly cert_file: string;
  readonly key_file?: string;
  readonly key_env?: string;
  readonly servernames?: readonly string[];
}

/** One VIP of a segment. */
export interface VipConfig {
  readonly listen: string;
  readonly protocol: 'http' | 'https' | 'tcp';
  readonly ipv6_only: boolean;
  /** SO_REUSEPORT: other processes may bind the same address (schema default false). */
  readonly reuse_port: boolean;
  readonly tls?: {
    readonly certificates: readonly TlsCertificateConfig[];
    readonly min_version: 'TLSv1.2' | 'TLSv1.3';
  };
  readonly proxy_protocol?: { readonly trusted: readonly string[] };
}

/** Which forwarding headers seglb sets on requests to backends. */
export interface ForwardedHeadersConfig {
  readonly x_forwarded_for: boolean;
  readonly x_forwarded_proto: boolean;
  readonly x_forwarded_host: boolean;
}

/** One segment (`segments.NAME`). */
export interface SegmentConfig {
  readonly description?: string;
  readonly mode: 'enforce' | 'audit';
  /** What happens to open connections when a change denies their source. */
  readonly revoke: 'immediate' | 'after_request' | 'never';
  readonly vips: readonly VipConfig[];
  readonly pool: string;
  readonly backend_subnets: readonly string[];
  readonly allow: readonly RuleConfig[];
  readonly deny: readonly RuleConfig[];
  readonly trusted_proxies: readonly string[];
  readonly forwarded_headers: ForwardedHeadersConfig;
}

/** One backend of a pool. */
export interface BackendConfig {
  readonly address: string;
  readonly name?: string;
  readonly weight: number;
  readonly backup: boolean;
  /** Requests (HTTP) or connections (TCP) at once; 0 = no limit. */
  readonly max_connections: number;
}

/** The request key of consistent_hash (`pools.NAME.hash`). */
export interface PoolHashConfig {
  readonly key: 'source' | 'header' | 'cookie' | 'path';
  /** Header or cookie name (required for those keys). */
  readonly name?: string;
  /** Maglev table slots, a prime. */
  readonly table_size: number;
}

/** Retry budget over a sliding window (`pools.NAME.retry_budget`). */
export interface RetryBudgetConfig {
  readonly budget_percent: number;
  readonly min_retries_per_second: number;
  readonly window_ms: number;
}

/** An active health check (`pools.NAME.health_check`). */
export interface HealthCheckConfig {
  readonly type: 'tcp' | 'http';
  readonly interval_ms: number;
  readonly timeout_ms: number;
  readonly rise: number;
  readonly fall: number;
  readonly jitter_percent: number;
  /**
   * Whose verdict decides: `local`, this node's checks; `majority`, the majority of the live cluster
   * nodes that report the backend (this node's own verdict without a cluster or reports).
   */
  readonly cluster_view: 'local' | 'majority';
  readonly http: {
    readonly method: 'GET' | 'HEAD' | 'OPTIONS' | 'POST';
    readonly path: string;
    readonly host?: string;
    /** `200` or `200-399` strings. */
    readonly expect_status: readonly string[];
    readonly body_contains?: string;
  };
}

/** Passive health checking (`pools.NAME.outlier_detection`). */
export interface OutlierDetectionConfig {
  readonly consecutive_connect_failures: number;
  readonly consecutive_5xx: number;
  readonly base_ejection_ms: number;
  readonly max_ejection_ms: number;
  readonly max_ejection_percent: number;
}

/** TLS towards the backends (`pools.NAME.tls`). `ca_file` is absolute after loading. */
export interface BackendTlsConfig {
  readonly servername?: string;
  readonly ca_file?: string;
  readonly verify: boolean;
}

/** Session persistence (`pools.NAME.sticky`). `key_file` is absolute after loading. */
export interface StickyConfig {
  readonly cookie?: {
    readonly name: string;
    readonly key_file?: string;
    readonly key_env?: string;
    readonly max_age_s: number;
  };
  readonly source?: { readonly ttl_ms: number; readonly max_entries: number };
}

/** One pool (`pools.NAME`). */
export interface PoolConfig {
  readonly algorithm:
    | 'round_robin'
    | 'weighted_round_robin'
    | 'least_connections'
    | 'random_two_choices'
    | 'source_hash'
    | 'consistent_hash'
    | 'first';
  readonly backends: readonly BackendConfig[];
  readonly hash: PoolHashConfig;
  readonly retries: number;
  readonly retry_budget: RetryBudgetConfig;
  readonly queue_size: number;
  readonly queue_timeout_ms: number;
  readonly panic_threshold_percent: number;
  readonly health_check?: HealthCheckConfig;
  readonly outlier_detection: OutlierDetectionConfig;
  readonly tls?: BackendTlsConfig;
  readonly sticky?: StickyConfig;
  readonly demo: boolean;
}

/** The admin API listener (`admin:`). Paths are absolute after loading. */
export interface AdminConfig {
  readonly listen: string;
  readonly tokens_file: string;
  readonly tls?: { readonly cert_file: string; readonly key_file: string };
  readonly state_file?: string;
  readonly audit_file?: string;
  /** Allow a non-loopback listen address without TLS. */
  readonly allow_insecure_remote: boolean;
}

/** An EWMA detector (`observe.detectors.deny_spike`, `observe.detectors.new_source_surge`). */
export interface EwmaDetectorConfig {
  readonly enabled: boolean;
  readonly action: 'alert' | 'quarantine';
  readonly dry_run: boolean;
  /** Smoothing factor of the baseline, (0, 1]. */
  readonly alpha: number;
  /** Standard deviations above the baseline mean. */
  readonly threshold_sigmas: number;
  /** Multiple of the baseline mean. */
  readonly threshold_ratio: number;
  /** Least count in one interval that can fire. */
  readonly min_count: number;
  /** Intervals learned before the detector may fire. */
  readonly warmup_intervals: number;
}

/** Visibility settings (`observe:`): flow records, metrics, events, anomaly detectors. */
export interface ObserveConfig {
  readonly flows: {
    readonly enabled: boolean;
    readonly ring_size: number;
    readonly max_groups: number;
  };
  /** JSON-lines flow log; absent: none. `file` is as written (relative to the config file). */
  readonly flow_log?: { readonly file: string; readonly max_bytes: number; readonly keep: number };
  readonly metrics_auth: 'token' | 'none';
  readonly events: {
    readonly ring_size: number;
    readonly max_stream_clients: number;
    readonly stream_flows_per_second: number;
  };
  /** Alert webhook; absent: none. */
  readonly webhook?: { readonly url: string; readonly timeout_ms: number; readonly max_in_flight: number };
  readonly detectors: {
    readonly interval_ms: number;
    readonly cooldown_ms: number;
    readonly quarantine_ttl_ms: number;
    readonly max_tracked_sources: number;
    readonly deny_spike: EwmaDetectorConfig;
    readonly new_source_surge: EwmaDetectorConfig;
    readonly lateral_movement: {
      readonly enabled: boolean;
      readonly action: 'alert' | 'quarantine';
      readonly dry_run: boolean;
      readonly window_ms: number;
      readonly min_segments: number;
    };
    readonly connection_rate: {
      readonly enabled: boolean;
      readonly action: 'alert' | 'quarantine';
      readonly dry_run: boolean;
      readonly window_ms: number;
      readonly max_connections: number;
    };
  };
}

/** The cluster sync channel (`cluster:`); see docs/cluster.md. Exactly one of key_file and tls. */
export interface ClusterConfig {
  /** Absent: the host name. */
  readonly node_id?: string;
  readonly listen: string;
  readonly peers: readonly string[];
  /** Pre-shared key file (hex); relative to the config file until resolved. */
  readonly key_file?: string;
  readonly tls?: { readonly cert_file: string; readonly key_file: string; readonly ca_file: string };
  readonly heartbeat_ms: number;
  readonly suspect_ms: number;
  readonly dead_ms: number;
  readonly anti_entropy_ms: number;
  readonly max_frame_bytes: number;
  readonly max_queue_bytes: number;
  readonly max_entries: number;
  readonly tombstone_ms: number;
  readonly max_clock_skew_ms: number;
  readonly max_connections: number;
}

/** The whole validated configuration. */
export interface SeglbConfig {
  readonly log: LogConfig;
  readonly timeouts: TimeoutsConfig;
  readonly limits: LimitsConfig;
  readonly ipsets: Readonly<Record<string, IpSetConfig>>;
  readonly segments: Readonly<Record<string, SegmentConfig>>;
  readonly pools: Readonly<Record<string, PoolConfig>>;
  readonly admin?: AdminConfig;
  readonly observe: ObserveConfig;
  readonly cluster?: ClusterConfig;
}
