// Replay protection for the sync channel. TLS already stops records from being replayed into another
// session; on top of it, every frame on a link must carry the next sequence number (1, 2, 3 ...) and
// the epoch of its link's hello, and a node's hello must not come from an epoch older than one
// already seen from that node id (an earlier run of it, or a recording of one).

/** How a hello's epoch compares with what is known about its node. */
export type EpochVerdict = 'new' | 'same' | 'newer' | 'stale';

/** Highest epoch seen per node id; one per ClusterNode, shared by all its links. */
export class EpochGuard {
  readonly #highest = new Map<string, number>();
  readonly #maxNodes: number;

  /** @param maxNodes - node ids remembered (a bound on memory; oldest forgotten first) */
  constructor(maxNodes = 4096) {
    this.#maxNodes = maxNodes;
  }

  /**
   * Checks and records a hello's epoch.
   * @returns 'new' (first time this node id is seen), 'same', 'newer' (the node restarted: links of
   *   its older epoch are zombies) or 'stale' (reject)
   */
  admit(node: string, epoch: number): EpochVerdict {
    const known = this.#highest.get(node);
    if (known === undefined) {
      if (this.#highest.size >= this.#maxNodes) {
        const oldest = this.#highest.keys().next().value;
        if (oldest !== undefined) this.#highest.delete(oldest);
      }
      this.#highest.set(node, epoch);
      return 'new';
    }
    if (epoch < known) return 'stale';
    if (epoch === known) return 'same';
    this.#highest.set(node, epoch);
    return 'newer';
  }

  /** The highest epoch seen from a node, if any. */
  highest(node: string): number | undefined {
    return this.#highest.get(node);
  }
}

/**
 * Checks one frame's envelope against its link: same node id and epoch as the hello, and exactly
 * the next sequence number.
 * @returns a reason when it must be rejected, undefined when it is in order
 */
export function checkEnvelope(
  link: { readonly node: string; readonly epoch: number; readonly lastSeq: number },
  frame: { readonly node: string; readonly epoch: number; readonly seq: number },
): string | undefined {
  if (frame.node !== link.node) return `frame from node ${frame.node} on the link of ${link.node}`;
  if (frame.epoch !== link.epoch) return `frame of epoch ${frame.epoch} on a link of epoch ${link.epoch}`;
  if (frame.seq !== link.lastSeq + 1) {
    return frame.seq <= link.lastSeq
      ? `sequence number ${frame.seq} already seen (last ${link.lastSeq}): replay`
      : `sequence number ${frame.seq} skips ahead of ${link.lastSeq + 1}`;
  }
  return undefined;
}
