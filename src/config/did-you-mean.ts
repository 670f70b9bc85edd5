// "Did you mean" suggestions for config names (keys, IP sets, pools): the known name closest to a
// typo by edit distance, so an error can name the fix instead of only the mistake.

/**
 * The known name within edit distance 2 of `name` (the closest; the first on a tie), if any.
 * @param name - what was written
 * @param known - the names that exist
 */
export function closestName(name: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) {
      bestDistance = d;
      best = candidate;
    }
  }
  return best;
}

/** `; did you mean "x"?` for the closest known name, or '' when none is close. */
export function didYouMean(name: string, known: Iterable<string>): string {
  const hint = closestName(name, known);
  return hint === undefined ? '' : `; did you mean "${hint}"?`;
}

/** Levenshtein distance (insert, delete, substitute), one row of memory. */
function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] as number;
      row[j] = Math.min(
        (row[j] as number) + 1,
        (row[j - 1] as number) + 1,
        prev + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      prev = tmp;
    }
  }
  return row[b.length] as number;
}
