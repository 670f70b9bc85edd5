// Sends alerts to an operator's webhook: one POST of the alert's JSON per alert, with a timeout and a
// bound on requests in flight (an alert storm drops and counts instead of queueing without end).
// No retries: the event stays available on GET /events.

import type { Logger } from './log.ts';

/** Settings of `observe.webhook`. */
export interface WebhookOptions {
  readonly url: string;
  readonly timeoutMs: number;
  readonly maxInFlight: number;
}

/** Posts JSON bodies to one URL. */
export class WebhookSender {
  readonly #options: WebhookOptions;
  readonly #log: Logger;
  #inFlight = 0;
  sent = 0;
  failed = 0;
  dropped = 0;

  constructor(options: WebhookOptions, log: Logger) {
    this.#options = options;
    this.#log = log;
  }

  /** Posts `body` (JSON text); resolves when done or failed (never rejects). */
  async post(body: string): Promise<void> {
    if (this.#inFlight >= this.#options.maxInFlight) {
      this.dropped++;
      return;
    }
    this.#inFlight++;
    try {
      const res = await fetch(this.#options.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'seglb-alert' },
        body,
        signal: AbortSignal.timeout(this.#options.timeoutMs),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.ok) this.sent++;
      else {
        this.failed++;
        this.#log.warn({ status: res.status }, 'alert webhook answered with an error status');
      }
    } catch (err) {
      this.failed++;
      this.#log.warn({ err: (err as Error).message }, 'alert webhook failed');
    } finally {
      this.#inFlight--;
    }
  }
}
