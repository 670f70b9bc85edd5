// The bounded in-memory ring of flow records (one per connection and per HTTP request). Slots are
// preallocated objects overwritten in place, so recording a flow allocates nothing; reading
// (the API) copies the matching slots out.

/** Verdict of a flow, as small integers on the hot path. */
export const FLOW_ALLOW = 0;
export const FLOW_DENY = 1;
/** Would have been denied, let through because the segment is in audit mode. */
export const FLOW_AUDIT = 2;
export type FlowVerdict = typeof FLOW_ALLOW | typeof FLOW_DENY | typeof FLOW_AUDIT;
export const FLOW_VERDICT_NAMES: readonly ['allow', 'deny', 'audit'] = ['allow', 'deny', 'audit'];
export type FlowVerdictName = (typeof FLOW_VERDICT_NAMES)[number];

/** Kind of a flow: a client connection or one HTTP request on it. */
export const FLOW_CONN = 0;
export const FLOW_REQ = 1;
export type FlowKind = typeof FLOW_CONN | typeof FLOW_REQ;
export const FLOW_KIND_NAMES: readonly ['conn', 'req'] = ['conn', 'req'];

/** One flow record as the API and the flow log show it. */
export interface FlowRecord {
  /** Sequence number, increasing by one per record (gaps: records overwritten in the ring). */
  readonly seq: number;
  /** ISO 8601 time the flow ended (or was refused). */
  readonly time: string;
  readonly kind: 'conn' | 'req';
  readonly segment: string;
  /** The VIP as configured (`listen`). */
  readonly vip: string;
  /** Client address (normalised; the X-Forwarded-For client behind a trusted proxy). */
  readonly source: string;
  readonly verdict: FlowVerdictName;
  /** Deciding rule name, `default-deny`, `quarantine` or `trusted-proxy`. */
  readonly rule: string;
  /** Backend name, or '' when none was used. */
  readonly backend: string;
  /** HTTP status sent to the client (0 for connections and requests that got none). */
  readonly status: number;
  /** Bytes received from the client (request: body per Content-Length; connection: all bytes). */
  readonly bytesIn: number;
  /** Bytes sent to the client (request: response body; connection: all bytes). */
  readonly bytesOut: number;
  /** Duration in ms (accept to close; request received to response end). */
  readonly durationMs: number;
}

/** A mutable slot; its shape never changes, so the writes stay monomorphic. */
class FlowSlot {
  seq = 0;
  timeMs = 0;
  kind: FlowKind = FLOW_CONN;
  segment = '';
  vip = '';
  source = '';
  verdict: FlowVerdict = FLOW_ALLOW;
  rule = '';
  backend = '';
  status = 0;
  bytesIn = 0;
  bytesOut = 0;
  durationMs = 0;
}

/** Filters of `GET /flows`. */
export interface FlowQuery {
  /** Most records returned, newest first. */
  readonly limit: number;
  readonly segment?: string;
  readonly verdict?: FlowVerdictName;
  readonly source?: string;
  /** Only records with seq greater than this. */
  readonly afterSeq?: number;
}

/**
 * A fixed-capacity ring of flow records. `push` is O(1) and allocation-free; `query` walks from the
 * newest record back. Capacity 0 keeps nothing.
 */
export class FlowRing {
  readonly #slots: FlowSlot[];
  #next = 0;
  #seq = 0;

  /** @param capacity - records kept (older ones are overwritten) */
  constructor(capacity: number) {
    this.#slots = Array.from({ length: capacity }, () => new FlowSlot());
  }

  get capacity(): number {
    return this.#slots.length;
  }

  /** Records written since start (also the seq of the newest). */
  get written(): number {
    return this.#seq;
  }

  /** Writes one record over the oldest slot. @returns its sequence number */
  push(
    timeMs: number,
    kind: FlowKind,
    segment: string,
    vip: string,
    source: string,
    verdict: FlowVerdict,
    rule: string,
    backend: string,
    status: number,
    bytesIn: number,
    bytesOut: number,
    durationMs: number,
  ): number {
    const seq = ++this.#seq;
    const n = this.#slots.length;
    if (n === 0) return seq;
    const s = this.#slots[this.#next] as FlowSlot;
    this.#next = this.#next + 1 === n ? 0 : this.#next + 1;
    s.seq = seq;
    s.timeMs = timeMs;
    s.kind = kind;
    s.segment = segment;
    s.vip = vip;
    s.source = source;
    s.verdict = verdict;
    s.rule = rule;
    s.backend = backend;
    s.status = status;
    s.bytesIn = bytesIn;
    s.bytesOut = bytesOut;
    s.durationMs = durationMs;
    return seq;
  }

  /** The newest records matching the query, newest first. */
  query(q: FlowQuery): FlowRecord[] {
    const out: FlowRecord[] = [];
    const n = this.#slots.length;
    const held = Math.min(n, this.#seq);
    const verdict = q.verdict === undefined ? -1 : FLOW_VERDICT_NAMES.indexOf(q.verdict);
    const after = q.afterSeq ?? 0;
    for (let i = 1; i <= held && out.length < q.limit; i++) {
      const s = this.#slots[(this.#next - i + n) % n] as FlowSlot;
      if (s.seq <= after) break;
      if (q.segment !== undefined && s.segment !== q.segment) continue;
      if (verdict >= 0 && s.verdict !== verdict) continue;
      if (q.source !== undefined && s.source !== q.source) continue;
      out.push(slotRecord(s));
    }
    return out;
  }
}

/** Copies a slot out as a plain record. */
function slotRecord(s: FlowSlot): FlowRecord {
  return flowRecord(
    s.seq,
    s.timeMs,
    s.kind,
    s.segment,
    s.vip,
    s.source,
    s.verdict,
    s.rule,
    s.backend,
    s.status,
    s.bytesIn,
    s.bytesOut,
    s.durationMs,
  );
}

/** Builds the public record shape (for the API, SSE and the flow log). */
export function flowRecord(
  seq: number,
  timeMs: number,
  kind: FlowKind,
  segment: string,
  vip: string,
  source: string,
  verdict: FlowVerdict,
  rule: string,
  backend: string,
  status: number,
  bytesIn: number,
  bytesOut: number,
  durationMs: number,
): FlowRecord {
  return {
    seq,
    time: new Date(timeMs).toISOString(),
    kind: FLOW_KIND_NAMES[kind],
    segment,
    vip,
    source,
    verdict: FLOW_VERDICT_NAMES[verdict],
    rule,
    backend,
    status,
    bytesIn,
    bytesOut,
    durationMs: Math.round(durationMs * 1000) / 1000,
  };
}
