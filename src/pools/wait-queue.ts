// The bounded queue of requests and connections waiting for a backend slot when every usable
// backend is at max_connections (HAProxy's backend queue). One per pool, shared by every segment
// and snapshot; served in arrival order whenever a slot frees up or the pool's membership changes.

/** Something waiting for a backend. */
export interface QueueWaiter {
  /**
   * Tries to take a backend now. `served`: it got one (or was refused for good: no backend is usable
   * any more) and leaves the queue; `full`: it keeps waiting.
   */
  tryServe(): 'served' | 'full';
}

/** A FIFO of waiters with removal from the middle (timeouts, clients going away). */
export class WaitQueue {
  #items: QueueWaiter[] = [];
  #serving = false;
  #again = false;
  /** Waiters refused because the queue was full, and waits that timed out (for status). */
  rejectedFull = 0;
  timedOut = 0;

  get length(): number {
    return this.#items.length;
  }

  /** Appends a waiter (the caller checked the size limit). */
  push(w: QueueWaiter): void {
    this.#items.push(w);
  }

  /**
   * Removes a waiter (timeout, client gone). During a serve() pass it is left in place: a waiter that
   * is done must answer `served` from tryServe(), which drops it.
   */
  remove(w: QueueWaiter): void {
    if (this.#serving) return;
    const i = this.#items.indexOf(w);
    if (i >= 0) this.#items.splice(i, 1);
  }

  /**
   * Offers freed capacity to the waiters in arrival order. Every waiter is asked (bounded by the
   * queue size), because one stuck to a full backend must not hold back others that any backend can
   * take. A call made while a pass runs (a served request ended at once) runs another pass after it.
   */
  serve(): void {
    if (this.#serving) {
      this.#again = true;
      return;
    }
    if (this.#items.length === 0) return;
    this.#serving = true;
    try {
      do {
        this.#again = false;
        const items = this.#items;
        let kept = 0;
        // items.length is read each turn: waiters queued during the pass are asked too.
        for (let i = 0; i < items.length; i++) {
          const w = items[i]!;
          if (w.tryServe() === 'full') items[kept++] = w;
        }
        items.length = kept;
      } while (this.#again && this.#items.length > 0);
    } finally {
      this.#serving = false;
    }
  }
}
