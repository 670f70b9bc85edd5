// The one registry of seglb's typed errors and their stable codes (SEGLB_<AREA>_<WHAT>).
// Callers match on `code`, never on message text; docs/errors.md lists exactly these codes
// (test/errors.test.ts keeps the two in step). Retired codes are never reused.

/**
 * Every code seglb can raise, with a one-line meaning. Adding a code means adding a line here and
 * in docs/errors.md; removing one means moving it to RETIRED_CODES.
 */
export const ERROR_CODES = {
  SEGLB_CONFIG_INVALID: 'the configuration file failed validation (one or more positioned issues)',
  SEGLB_CONFIG_READ: 'the configuration file, or a file it names, could not be read',
  SEGLB_CONFIG_YAML: 'the configuration file is not well-formed YAML',
  SEGLB_NET_INVALID_ADDRESS: 'a string is not a valid IPv4 or IPv6 address',
  SEGLB_NET_INVALID_CIDR: 'a string is not a valid CIDR prefix',
  SEGLB_NET_NONCANONICAL_CIDR: 'a CIDR has host bits set; the message names the canonical form',
  SEGLB_NET_INVALID_ENDPOINT: 'a listen or backend address is not HOST:PORT',
  SEGLB_POLICY_UNKNOWN_IPSET: 'a rule or union names an IP set that does not exist',
  SEGLB_POLICY_IPSET_CYCLE: 'IP-set unions refer to each other in a cycle',
  SEGLB_POLICY_TOO_LARGE: 'a policy exceeds the matcher capacity',
  SEGLB_POLICY_INVALID_ENTRY:
    'a prefix or value given to the radix matcher is out of range (wrong family, prefix length, or a value outside 0..2^31-1)',
  SEGLB_POOL_NO_BACKEND: 'the pool has no usable backend (all down, draining or in maintenance)',
  SEGLB_POOL_OUTBOUND_DENIED: 'a backend address is outside the segment backend_subnets',
  SEGLB_POOL_CONNECT_TIMEOUT: 'connecting to a backend took longer than timeouts.backend_connect_ms',
  SEGLB_LISTENER_BIND: 'a VIP or listener could not bind its address and port',
  SEGLB_PROXY_PROTOCOL_INVALID: 'a PROXY protocol header is malformed',
  SEGLB_CLUSTER_BIND: 'the cluster sync listener could not bind its address and port',
  SEGLB_CLUSTER_KEY: 'the cluster pre-shared key file or TLS files are missing, unreadable or malformed',
  SEGLB_CLUSTER_AUTH:
    'a cluster peer failed authentication (wrong key, certificate or node id) and was refused',
  SEGLB_CLUSTER_FRAME:
    'a cluster peer sent a malformed, oversized or unsupported-version frame and was dropped',
  SEGLB_CLUSTER_REPLAY:
    'a cluster peer sent a message out of sequence or from an old epoch; the link was dropped',
  SEGLB_CLUSTER_PEER_DEAD:
    'a cluster peer missed heartbeats for dead_ms and is reported dead (nothing waits for it)',
  SEGLB_CLUSTER_INVALID_ENTRY:
    'a replicated entry (quarantine, policy change, health, stickiness) is invalid',
  SEGLB_CLUSTER_STATE_FULL: 'a replicated table holds cluster.max_entries keys; the new key was refused',
  SEGLB_CLUSTER_POLICY_DIVERGENCE: 'live cluster nodes run different policy versions',
  SEGLB_CLUSTER_CLOCK_SKEW: "an entry's clock is further ahead of local time than cluster.max_clock_skew_ms",
  SEGLB_CLUSTER_BACKPRESSURE:
    "a cluster peer's send queue exceeded cluster.max_queue_bytes; the link was dropped",
  SEGLB_CLI_USAGE: 'the command line is wrong; --help shows the usage',
  SEGLB_ADMIN_UNAUTHORIZED: 'an admin API call without a valid bearer token (HTTP 401)',
  SEGLB_ADMIN_FORBIDDEN: "an admin API call whose token's role is too low for it (HTTP 403)",
  SEGLB_ADMIN_BAD_REQUEST: 'an admin API call with a malformed body or parameters (HTTP 400)',
  SEGLB_ADMIN_NOT_FOUND:
    'an admin API call naming a route, segment, rule, IP set, pool or backend that does not exist (HTTP 404)',
  SEGLB_ADMIN_CONFLICT: 'an admin API change that conflicts with the current state (HTTP 409)',
  SEGLB_ADMIN_INVALID_CHANGE:
    'an admin API change that would make the configuration invalid; nothing was applied (HTTP 422)',
  SEGLB_ADMIN_STATE_WRITE:
    'the runtime state file or audit trail could not be written (disk full, permissions); the change is live but not persisted',
} as const;

/** Codes that existed once and must never be reused. */
export const RETIRED_CODES: readonly string[] = [];

/** A stable error code string, e.g. `'SEGLB_CONFIG_INVALID'`. */
export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Base class of every error seglb throws on purpose.
 * @param code - stable code from ERROR_CODES
 * @param message - human-readable text (never contains secrets)
 * @param options.cause - the underlying error, if any
 */
export class SeglbError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'SeglbError';
  }
}

/** One positioned problem in a configuration file: `file:line:col keyPath: message`. */
export interface ConfigIssue {
  /** Path of the file the problem is in. */
  file: string;
  /** 1-based line, 0 when the position is unknown. */
  line: number;
  /** 1-based column, 0 when the position is unknown. */
  col: number;
  /** Dotted key path, e.g. `segments.web.vips[0].listen`; `''` for the document root. */
  keyPath: string;
  /** What is wrong, in one sentence. */
  message: string;
  /**
   * The specific code when one applies (SEGLB_NET_NONCANONICAL_CIDR, SEGLB_POLICY_UNKNOWN_IPSET ...);
   * absent for plain schema problems. Not part of the formatted text.
   */
  code?: ErrorCode;
}

/**
 * Formats one issue as `file:line:col key.path: message`, the form every config error takes; an
 * issue about the whole file (line 0: unreadable, missing) as `file: message`, as gcc and tsc do.
 */
export function formatConfigIssue(issue: ConfigIssue): string {
  const where = issue.line > 0 ? `${issue.file}:${issue.line}:${issue.col}` : `${issue.file}:`;
  return issue.keyPath ? `${where} ${issue.keyPath}: ${issue.message}` : `${where} ${issue.message}`;
}

/**
 * A configuration file was rejected. Carries every issue found, all at once (validation never
 * stops at the first one). Code SEGLB_CONFIG_INVALID, SEGLB_CONFIG_YAML or SEGLB_CONFIG_READ.
 * The first issue's position is copied to file/line/col/keyPath for callers that want one.
 */
export class ConfigError extends SeglbError {
  readonly issues: readonly ConfigIssue[];
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly keyPath: string;
  constructor(code: ErrorCode, issues: readonly ConfigIssue[], options?: { cause?: unknown }) {
    super(code, issues.map(formatConfigIssue).join('\n'), options);
    this.name = 'ConfigError';
    this.issues = issues;
    const first = issues[0];
    this.file = first?.file ?? '';
    this.line = first?.line ?? 0;
    this.col = first?.col ?? 0;
    this.keyPath = first?.keyPath ?? '';
  }
}

/** Address or CIDR parsing failed (codes SEGLB_NET_*). */
export class NetError extends SeglbError {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'NetError';
  }
}

/** Policy compilation failed (codes SEGLB_POLICY_*). */
export class PolicyError extends SeglbError {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'PolicyError';
  }
}

/** A pool could not serve a request (codes SEGLB_POOL_*); `httpStatus` is what the client gets. */
export class PoolError extends SeglbError {
  readonly httpStatus: number;
  constructor(code: ErrorCode, message: string, httpStatus: number, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'PoolError';
    this.httpStatus = httpStatus;
  }
}

/** A listener could not start (codes SEGLB_LISTENER_*, SEGLB_PROXY_PROTOCOL_*). */
export class ListenerError extends SeglbError {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ListenerError';
  }
}

/**
 * A cluster sync failure (codes SEGLB_CLUSTER_*). Thrown by `ClusterNode.start` and by writes to the
 * replicated state; link-level problems (auth, frames, replays, dead peers) are logged and counted
 * with these codes rather than thrown, since nothing may wait on a peer.
 */
export class ClusterError extends SeglbError {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'ClusterError';
  }
}

/** An admin API failure (codes SEGLB_ADMIN_*); `httpStatus` is the status the API answers with. */
export class AdminError extends SeglbError {
  readonly httpStatus: number;
  /** Positioned config issues, for SEGLB_ADMIN_INVALID_CHANGE. */
  readonly issues: readonly ConfigIssue[];
  constructor(
    code: ErrorCode,
    message: string,
    httpStatus: number,
    options?: { cause?: unknown; issues?: readonly ConfigIssue[] },
  ) {
    super(code, message, options);
    this.name = 'AdminError';
    this.httpStatus = httpStatus;
    this.issues = options?.issues ?? [];
  }
}
