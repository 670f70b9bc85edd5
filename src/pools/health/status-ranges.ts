// `expect_status` of HTTP health checks: codes (`200`) and inclusive ranges (`200-399`), parsed once
// into pairs so that a check's verdict is a few comparisons.

/** Parsed ranges: [lo0, hi0, lo1, hi1, ...]. */
export type StatusRanges = Int16Array;

/**
 * Parses the config strings (already checked by the schema and validation).
 * @param specs - `["200-399", "404"]`
 */
export function parseStatusRanges(specs: readonly string[]): StatusRanges {
  const out = new Int16Array(specs.length * 2);
  specs.forEach((spec, i) => {
    const dash = spec.indexOf('-');
    const lo = Number(dash < 0 ? spec : spec.slice(0, dash));
    const hi = dash < 0 ? lo : Number(spec.slice(dash + 1));
    out[2 * i] = lo;
    out[2 * i + 1] = hi;
  });
  return out;
}

/** True when `status` is inside one of the ranges. */
export function statusMatches(ranges: StatusRanges, status: number): boolean {
  for (let i = 0; i < ranges.length; i += 2)
    if (status >= ranges[i]! && status <= ranges[i + 1]!) return true;
  return false;
}
