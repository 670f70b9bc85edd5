// The JSON payloads of the sync channel's messages: their shapes, strict checks of what a peer sent
// (nothing from the wire is trusted), and encoders, including ENTRIES split to fit the frame limit.

import { ClusterError } from '../errors.ts';
import { type MessageType, MSG } from './frame.ts';

/** First message on a link, both ways. */
export interface HelloMsg {
  /** Protocol versions the sender speaks. */
  readonly protoMin: number;
  readonly protoMax: number;
  /** The sender's cluster listen address (for status). */
  readonly listen: string;
  /** The sender's clock, folded into the receiver's hybrid clock. */
  readonly clock: { readonly wall: number; readonly counter: number };
}

/** Heartbeat; `t` is the sender's physical clock in ms. */
export interface PingMsg {
  readonly t: number;
}

/** Heartbeat answer: `t` echoed, `r` the answerer's physical clock when it answered. */
export interface PongMsg {
  readonly t: number;
  readonly r: number;
}

/** Anti-entropy round: per keyspace [rootA, rootB, count] over registers stamped before `before`. */
export interface RootsMsg {
  /** null: every register. */
  readonly before: number | null;
  readonly roots: Readonly<Record<string, readonly [number, number, number]>>;
}

/** One keyspace's bucket fingerprints; the receiver sends the registers of buckets that differ. */
export interface BucketsMsg {
  readonly ks: string;
  readonly before: number | null;
  /** true: the receiver answers with its own BUCKETS (answer false) so both sides push. */
  readonly answer: boolean;
  /** Sparse [index, a, b, index, a, b, ...] of non-empty buckets. */
  readonly buckets: readonly number[];
}

/** A register on the wire: [key, wall, counter, node, expiresAt (null = never), value?]. */
export type WireRegister = readonly [string, number, number, string, number | null, unknown?];

/** Registers of one keyspace (deltas, or a push after a digest comparison). */
export interface EntriesMsg {
  readonly ks: string;
  readonly entries: readonly WireRegister[];
}

/** Polite close: the peer is leaving (stop) or the link is a duplicate. */
export interface ByeMsg {
  readonly reason: 'leaving' | 'duplicate' | 'self' | 'stale-epoch';
}

/** A parsed message, tagged by its frame type. */
export type Message =
  | { readonly type: typeof MSG.HELLO; readonly body: HelloMsg }
  | { readonly type: typeof MSG.PING; readonly body: PingMsg }
  | { readonly type: typeof MSG.PONG; readonly body: PongMsg }
  | { readonly type: typeof MSG.ROOTS; readonly body: RootsMsg }
  | { readonly type: typeof MSG.BUCKETS; readonly body: BucketsMsg }
  | { readonly type: typeof MSG.ENTRIES; readonly body: EntriesMsg }
  | { readonly type: typeof MSG.BYE; readonly body: ByeMsg };

function bad(what: string): ClusterError {
  return new ClusterError('SEGLB_CLUSTER_FRAME', `malformed message: ${what}`);
}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isNat = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
const isU32 = (v: unknown): v is number => isNat(v) && (v as number) <= 0xffffffff;
const KS_PATTERN = /^[a-z]{1,32}$/;
const BYE_REASONS = new Set(['leaving', 'duplicate', 'self', 'stale-epoch']);

/**
 * Parses and checks a payload.
 * @throws ClusterError SEGLB_CLUSTER_FRAME when it is not JSON or not the shape of its type
 */
export function parseMessage(type: MessageType, payload: Buffer): Message {
  let v: unknown;
  try {
    v = JSON.parse(payload.toString('utf8'));
  } catch {
    throw bad('payload is not JSON');
  }
  if (!isObj(v)) throw bad('payload is not an object');
  switch (type) {
    case MSG.HELLO: {
      const clock = v['clock'];
      if (
        !isNat(v['protoMin']) ||
        !isNat(v['protoMax']) ||
        typeof v['listen'] !== 'string' ||
        v['listen'].length > 300 ||
        !isObj(clock) ||
        !isNat(clock['wall']) ||
        !isNat(clock['counter'])
      ) {
        throw bad('hello');
      }
      return { type, body: v as unknown as HelloMsg };
    }
    case MSG.PING:
      if (!isNat(v['t'])) throw bad('ping');
      return { type, body: v as unknown as PingMsg };
    case MSG.PONG:
      if (!isNat(v['t']) || !isNat(v['r'])) throw bad('pong');
      return { type, body: v as unknown as PongMsg };
    case MSG.ROOTS: {
      const roots = v['roots'];
      if (!(v['before'] === null || isNat(v['before'])) || !isObj(roots)) throw bad('roots');
      for (const [ks, r] of Object.entries(roots)) {
        if (!KS_PATTERN.test(ks) || !Array.isArray(r) || r.length !== 3 || !r.every(isU32)) throw bad('roots');
      }
      return { type, body: v as unknown as RootsMsg };
    }
    case MSG.BUCKETS: {
      const b = v['buckets'];
      if (
        typeof v['ks'] !== 'string' ||
        !KS_PATTERN.test(v['ks']) ||
        !(v['before'] === null || isNat(v['before'])) ||
        typeof v['answer'] !== 'boolean' ||
        !Array.isArray(b) ||
        b.length % 3 !== 0 ||
        !b.every(isU32)
      ) {
        throw bad('buckets');
      }
      return { type, body: v as unknown as BucketsMsg };
    }
    case MSG.ENTRIES: {
      const e = v['entries'];
      if (typeof v['ks'] !== 'string' || !KS_PATTERN.test(v['ks']) || !Array.isArray(e)) throw bad('entries');
      return { type, body: v as unknown as EntriesMsg };
    }
    case MSG.BYE:
      if (typeof v['reason'] !== 'string' || !BYE_REASONS.has(v['reason'])) throw bad('bye');
      return { type, body: v as unknown as ByeMsg };
  }
}

/** Serialises a message body. */
export function encodeBody(body: object): Buffer {
  return Buffer.from(JSON.stringify(body), 'utf8');
}

/**
 * Serialises registers into as many ENTRIES payloads as needed for each to stay under
 * `maxPayloadBytes`. A single register larger than that is left out (it could never be sent; the
 * write methods refuse such values up front).
 * @returns the payloads, and how many registers were too large
 */
export function encodeEntries(
  ks: string,
  entries: Iterable<WireRegister>,
  maxPayloadBytes: number,
): { payloads: Buffer[]; oversized: number } {
  const head = `{"ks":${JSON.stringify(ks)},"entries":[`;
  const tail = ']}';
  const fixed = head.length + tail.length;
  const payloads: Buffer[] = [];
  let parts: string[] = [];
  let bytes = fixed;
  let oversized = 0;
  for (const entry of entries) {
    const text = JSON.stringify(entry);
    const len = Buffer.byteLength(text, 'utf8') + 1;
    if (fixed + len > maxPayloadBytes) {
      oversized++;
      continue;
    }
    if (bytes + len > maxPayloadBytes) {
      payloads.push(Buffer.from(head + parts.join(',') + tail, 'utf8'));
      parts = [];
      bytes = fixed;
    }
    parts.push(text);
    bytes += len;
  }
  if (parts.length > 0) payloads.push(Buffer.from(head + parts.join(',') + tail, 'utf8'));
  return { payloads, oversized };
}
