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
  /**
   * The sender holds nothing but its own membership entry (it just started): the receiver need not
   * pull from it, which spares a restarting node from answering every peer's pull with the partial
   * state it is still receiving.
   */
  readonly empty?: boolean;
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
  /**
   * A (re)connect pull: the receiver ends its push with an ENTRIES `done` marker, so the puller can
   * pull from one peer at a time instead of taking the same registers from every peer at once.
   */
  readonly pull?: boolean;
  /** Sparse [index, a, b, index, a, b, ...] of non-empty buckets. */
  readonly buckets: readonly number[];
}

/** A register on the wire: [key, wall, counter, node, expiresAt (null = never), value?]. */
export type WireRegister = readonly [string, number, number, string, number | null, unknown?];

/** Registers of one keyspace (deltas, or a push after a digest comparison). */
export interface EntriesMsg {
  readonly ks: string;
  readonly entries: readonly WireRegister[];
  /** The last frame of the push answering a pull. */
  readonly done?: boolean;
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
        !isNat(clock['counter']) ||
        !(v['empty'] === undefined || typeof v['empty'] === 'boolean')
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
        if (!KS_PATTERN.test(ks) || !Array.isArray(r) || r.length !== 3 || !r.every(isU32))
          throw bad('roots');
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
        !(v['pull'] === undefined || typeof v['pull'] === 'boolean') ||
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
      if (
        typeof v['ks'] !== 'string' ||
        !KS_PATTERN.test(v['ks']) ||
        !Array.isArray(e) ||
        !(v['done'] === undefined || typeof v['done'] === 'boolean')
      ) {
        throw bad('entries');
      }
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
 * Serialises registers into ENTRIES payloads of at most `maxPayloadBytes` each, lazily: one payload
 * per `next()`, so a push of 100k registers is encoded as the socket drains, between heartbeats,
 * not in one long block. Chunks of many registers are stringified at once (much cheaper than one
 * by one); the chunk size halves when a payload comes out too large and doubles while they stay
 * under half the limit. A single register larger than the limit is skipped and counted (the write
 * methods refuse such values up front).
 * @param toWire - turns an item into its wire form (called once per item, when its chunk is encoded)
 * @param onOversized - told about each skipped register
 */
export function* entryPayloads<T>(
  ks: string,
  items: readonly T[],
  toWire: (item: T) => WireRegister,
  maxPayloadBytes: number,
  onOversized: () => void = () => {},
): Generator<Buffer, void, undefined> {
  const head = `{"ks":${JSON.stringify(ks)},"entries":`;
  let chunk = 256;
  let i = 0;
  while (i < items.length) {
    const take = Math.min(chunk, items.length - i);
    const text = `${head}${JSON.stringify(items.slice(i, i + take).map(toWire))}}`;
    const bytes = Buffer.byteLength(text, 'utf8');
    if (bytes > maxPayloadBytes) {
      if (take === 1) {
        onOversized();
        i++;
      } else {
        chunk = take >> 1;
      }
      continue;
    }
    yield Buffer.from(text, 'utf8');
    i += take;
    if (bytes < maxPayloadBytes / 2 && take === chunk) chunk *= 2;
  }
}

/** All payloads of entryPayloads at once, and how many registers were too large (deltas, tests). */
export function encodeEntries(
  ks: string,
  entries: readonly WireRegister[],
  maxPayloadBytes: number,
): { payloads: Buffer[]; oversized: number } {
  let oversized = 0;
  const payloads = [
    ...entryPayloads(
      ks,
      entries,
      (e) => e,
      maxPayloadBytes,
      () => {
        oversized++;
      },
    ),
  ];
  return { payloads, oversized };
}
