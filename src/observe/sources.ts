// Recently seen sources per segment: the bounded connection log that `simulate` replays a
// candidate policy against. One Map per segment, oldest entries evicted first.

/** What is remembered of one source on one segment. */
export interface ObservedSource {
  readonly source: string;
  /** Connections seen (accepted or refused) since first seen, while remembered. */
  readonly connections: number;
  /** ms since the epoch. */
  readonly lastSeen: number;
}

/**
 * A bounded per-segment map source -> (connections, lastSeen). `record` is O(1): a Map delete+set
 * keeps insertion order equal to recency, so eviction takes the first key.
 */
export class ObservedSources {
  readonly #perSegment = new Map<string, Map<string, { connections: number; lastSeen: number }>>();
  readonly #max: number;
  readonly #now: () => number;

  /**
   * @param maxPerSegment - sources remembered per segment (default 10,000)
   * @param now - clock in ms
   */
  constructor(maxPerSegment = 10_000, now: () => number = Date.now) {
    this.#max = maxPerSegment;
    this.#now = now;
  }

  /**
   * Notes one connection from `source` (normalised) to `segment`.
   * @returns true when the source was not remembered for the segment (new, or evicted since)
   */
  record(segment: string, source: string): boolean {
    let m = this.#perSegment.get(segment);
    if (m === undefined) {
      m = new Map();
      this.#perSegment.set(segment, m);
    }
    const e = m.get(source);
    const now = this.#now();
    if (e !== undefined) {
      m.delete(source);
      e.connections++;
      e.lastSeen = now;
      m.set(source, e);
      return false;
    }
    if (m.size >= this.#max) {
      const oldest = m.keys().next().value;
      if (oldest !== undefined) m.delete(oldest);
    }
    m.set(source, { connections: 1, lastSeen: now });
    return true;
  }

  /**
   * Sources seen on a segment since `sinceMs` (ms since the epoch), most recent first.
   */
  recent(segment: string, sinceMs: number): ObservedSource[] {
    const m = this.#perSegment.get(segment);
    if (m === undefined) return [];
    const out: ObservedSource[] = [];
    for (const [source, e] of m)
      if (e.lastSeen >= sinceMs) out.push({ source, connections: e.connections, lastSeen: e.lastSeen });
    return out.reverse();
  }
}
