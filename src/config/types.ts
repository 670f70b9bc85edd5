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
}

/** Size and count limits (`limits:`). */
export interface LimitsConfig {
  /** Bytes. */
  readonly max_header_bytes: number;
  readonly max_connections: number;
  readonly backend_connections: number;
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
}

/** One pool (`pools.NAME`). */
export interface PoolConfig {
  readonly algorithm: 'round_robin' | 'weighted_round_robin' | 'least_connections';
  readonly backends: readonly BackendConfig[];
  readonly retries: number;
  readonly demo: boolean;
}

/** The admin API listener (`admin:`). Paths are absolute after loading. */
export interface AdminConfig {
  readonly listen: string;
  readonly tokens_file: string;
  readonly tls?: { readonly cert_file: string; readonly key_file: string };
  readonly state_file?: string;
  readonly audit_file?: string;
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
  readonly cluster?: { readonly listen: string; readonly peers: readonly string[] };
}
