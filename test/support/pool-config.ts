// Configs for pool tests that need no sockets: one segment `web` (10.0.0.0/8 backends, any source)
// in front of pool `p`, with whatever pools the test describes.

import { type LoadedConfig, loadConfigText } from '../../src/config/index.ts';

/**
 * Loads a config whose segment `web` uses pool `p`.
 * @param pools - the body of `pools:` (YAML lines indented 2: `  p:` ... )
 * @param file - the path positions and relative files are read against
 */
export function loadPoolsConfig(pools: string, file = '/tmp/seglb-pool-test.yaml'): LoadedConfig {
  return loadConfigText(
    `
log: { level: silent }
segments:
  web:
    vips: [{ listen: "127.0.0.1:0" }]
    pool: p
    backend_subnets: [10.0.0.0/8]
    allow: [{ from: [any] }]
pools:
${pools}
`,
    file,
  );
}
