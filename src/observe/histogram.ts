// Fixed-bucket latency histograms kept as plain numbers (a Float64Array of bucket counts, a sum and
// a count): observing is a short linear scan with no allocation, and prom-client reads them at
// scrape time. Buckets follow the Prometheus client defaults, extended down to 0.5 ms because a
// proxy's own overhead lives below 1 ms.

/** Upper bounds in seconds (Prometheus `le`), ascending; +Inf is implicit. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
const BOUNDS_MS = Float64Array.from(LATENCY_BUCKETS_SECONDS, (s) => s * 1000);

/** One histogram series. `counts[i]` is the count of the i-th bucket alone (not cumulative). */
export class LatencyHistogram {
  readonly counts = new Float64Array(BOUNDS_MS.length + 1);
  /** Sum of observations, seconds. */
  sum = 0;
  count = 0;

  /** Records one duration in milliseconds (negative values count as 0). */
  observeMs(ms: number): void {
    const v = Math.max(ms, 0);
    let i = 0;
    while (i < BOUNDS_MS.length && v > (BOUNDS_MS[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += v / 1000;
    this.count++;
  }

  /** Cumulative counts per bucket, the last one being +Inf (= count). */
  cumulative(): number[] {
    const out: number[] = [];
    let acc = 0;
    for (const c of this.counts) {
      acc += c;
      out.push(acc);
    }
    return out;
  }
}
