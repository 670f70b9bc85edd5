// The Node (V8) flags seglb is meant to run with. They must be on the command line or in
// NODE_OPTIONS: V8 sizes its heap when the process starts, and v8.setFlagsFromString cannot change
// the young generation afterwards (measured: it is ignored or made larger).

/**
 * `--max-semi-space-size=16` (MB): caps V8's young generation at 2 x 16 MB semi-spaces. Node 24
 * lets them grow to 2 x 32 MB on a machine this size, and under a proxy's allocation rate
 * (~14 KB a request, ~450 MB/s at 33k req/s) they always do; old space then grows on top of that.
 * Measured with the 246k-prefix policy under wrk -t1 c=50 (bench/, same run, 3 rounds): RSS
 * ~210 MB steady with the flag, 300-330 MB and rising without; req/s and CPU per request within
 * the run-to-run noise (26.7k vs 26.4k req/s, 38.4 vs 38.7 µs). 8 MB saves another 15 MB and
 * doubles the scavenges.
 *
 *
 * `--expose-gc`: lets seglb run one memory-reducing GC after loading a config with large IP sets
 * (src/memory.ts), which returns the ~150 MB the parse used: RSS under load with the 246k-prefix
 * policy ~230 MB instead of ~345 MB, same throughput (4 alternating rounds). seglb calls `gc`
 * nowhere else. It cannot be set at run time without slowing the whole process (memory.ts).
 *
 * Used by `npm start` (package.json), the Docker image (NODE_OPTIONS) and the benchmarks; a test
 * keeps those in step with this list. A global install reads NODE_OPTIONS (docs/deploy.md).
 */
export const RECOMMENDED_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=16', '--expose-gc'];
