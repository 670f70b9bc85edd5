// An exponentially weighted moving average with an exponentially weighted variance: the per-segment
// baseline of the anomaly detectors. For samples x_t (counts per interval) and smoothing α in (0, 1]:
//
//   δ_t  = x_t − μ_{t−1}
//   μ_t  = μ_{t−1} + α·δ_t                         (= α·x_t + (1 − α)·μ_{t−1})
//   σ²_t = (1 − α)·(σ²_{t−1} + α·δ_t²)             (Welford-style EW variance, Finch 2009 §9)
//
// A sample is anomalous when x_t ≥ max(min_count, μ_{t−1} + k·σ_{t−1}, ratio·μ_{t−1}). An anomalous
// sample is folded into the baseline clamped to that threshold, so an attack does not teach the
// baseline that attacks are normal (a winsorised EWMA).

/** Baseline of one series. Plain numbers; update is O(1). */
export class Ewma {
  mean = 0;
  variance = 0;
  /** Samples seen. */
  samples = 0;

  /** Standard deviation of the baseline. */
  get stddev(): number {
    return Math.sqrt(this.variance);
  }

  /**
   * The value at and above which a sample counts as anomalous.
   * @param k - standard deviations above the mean
   * @param ratio - multiple of the mean
   * @param minCount - absolute floor
   */
  threshold(k: number, ratio: number, minCount: number): number {
    return Math.max(minCount, this.mean + k * this.stddev, ratio * this.mean);
  }

  /** Folds one sample in. @param alpha - smoothing factor in (0, 1] */
  update(x: number, alpha: number): void {
    if (this.samples === 0) {
      this.mean = x;
      this.variance = 0;
    } else {
      const delta = x - this.mean;
      this.mean += alpha * delta;
      this.variance = (1 - alpha) * (this.variance + alpha * delta * delta);
    }
    this.samples++;
  }
}
