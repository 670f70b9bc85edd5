// seglb's version, read once from package.json (next to src/ in the repo, next to dist/ in the package).

import { readFileSync } from 'node:fs';

let cached: string | undefined;

/** The package version, e.g. `0.1.0`. */
export function packageVersion(): string {
  cached ??= (
    JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  ).version;
  return cached;
}
