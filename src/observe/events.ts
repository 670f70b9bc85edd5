// The event feed of the API and the dashboard: a bounded ring of recent alerts (GET /events) and
// the live subscribers of the SSE stream (/events/stream), which also get deny flows and periodic
// stats. Publishing to nobody costs one size check.

/** An alert raised by a detector. */
export interface AlertEvent {
  /** Increasing id (SSE `id:`). */
  readonly id: number;
  /** ISO 8601. */
  readonly time: string;
  readonly type: 'alert';
  /** deny_spike, new_source_surge, lateral_movement, connection_rate */
  readonly detector: string;
  /** The segment concerned, or null for detectors that span segments. */
  readonly segment: string | null;
  /** The offending source, when there is one. */
  readonly source: string | null;
  /** The observed value (count in the interval or window). */
  readonly value: number;
  /** The threshold it crossed. */
  readonly threshold: number;
  /** The baseline mean before this interval (EWMA detectors), else null. */
  readonly baseline: number | null;
  /** What the detector is configured to do. */
  readonly action: 'alert' | 'quarantine';
  /** True when the quarantine was only reported (dry run). */
  readonly dryRun: boolean;
  /** CIDRs quarantined (or that would be, in a dry run). */
  readonly quarantine: readonly string[];
  readonly message: string;
}

/** A subscriber of the live stream: gets the event name and its JSON text. */
export type EventSubscriber = (event: string, json: string, id: number) => void;

/** Recent alerts plus live subscribers. */
export class EventHub {
  readonly #ring: (AlertEvent | undefined)[];
  #next = 0;
  #id = 0;
  readonly #subscribers = new Set<EventSubscriber>();

  /** @param capacity - alerts kept for GET /events */
  constructor(capacity: number) {
    this.#ring = new Array(Math.max(1, capacity));
  }

  /** True when someone listens (callers skip building events otherwise). */
  get watched(): boolean {
    return this.#subscribers.size > 0;
  }

  get subscribers(): number {
    return this.#subscribers.size;
  }

  /** The next event id. */
  nextId(): number {
    return ++this.#id;
  }

  /** Keeps an alert and sends it to subscribers. */
  alert(event: AlertEvent): void {
    this.#ring[this.#next] = event;
    this.#next = (this.#next + 1) % this.#ring.length;
    this.publish('alert', JSON.stringify(event), event.id);
  }

  /** Sends an event to the live subscribers only. */
  publish(event: string, json: string, id = 0): void {
    for (const s of this.#subscribers) s(event, json, id);
  }

  /** Recent alerts, newest first, optionally only those with id > afterId. */
  recent(limit: number, afterId = 0): AlertEvent[] {
    const out: AlertEvent[] = [];
    const n = this.#ring.length;
    for (let i = 1; i <= n && out.length < limit; i++) {
      const e = this.#ring[(this.#next - i + n) % n];
      if (e === undefined || e.id <= afterId) break;
      out.push(e);
    }
    return out;
  }

  /** @returns an unsubscribe function */
  subscribe(s: EventSubscriber): () => void {
    this.#subscribers.add(s);
    return () => {
      this.#subscribers.delete(s);
    };
  }
}
