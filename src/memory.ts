// Returning the memory a large config load used to the operating system.
//
// Parsing and compiling a 250k-prefix IP set allocates ~150 MB of short-lived objects. V8 keeps the
// pages it grew into (committed or pooled for reuse) and, under steady traffic, never runs the idle
// "memory reducer" that would give them back: measured, a seglb with the 246k-prefix country set
// sat at 340-440 MB RSS under load with 25-35 MB of live heap, 120-150 MB of it V8's page pool.
// One last-resort (memory-reducing) full GC right after a large load returns those pages: the same
// process then stays at ~230 MB.
//
// The only way to ask V8 for that GC is the `gc` function of `--expose-gc`, which must be given on
// the command line (src/cli/node-flags.ts; npm start and the image do). Setting it at run time with
// v8.setFlagsFromString also works but was measured to cost 15-20% throughput for the rest of the
// process's life (CPU per request 31 -> 38 us, keep-alive, 4 alternating rounds): never do that.

/** Prefixes over all IP sets from which a config load is worth a memory-reducing GC. */
export const LARGE_LOAD_PREFIXES = 10_000;

type GcFunction = (options?: {
  type?: 'major' | 'minor';
  execution?: 'sync' | 'async';
  flavor?: string;
}) => void;

/** Node's `gc` when started with --expose-gc, taken once at load. */
const exposedGc: GcFunction | null =
  typeof (globalThis as { gc?: unknown }).gc === 'function' ? (globalThis as { gc: GcFunction }).gc : null;

/**
 * Runs one synchronous last-resort major GC, which also releases V8's pooled pages to the OS.
 * Pauses the event loop for the GC (measured 30-50 ms with 25-60 MB live): call it only after a
 * large config load (start-up, reload), never per request.
 * @returns the pause in ms, or null when node was started without --expose-gc (nothing is done:
 *   the memory is then reused by later allocations instead of returned)
 */
export function releaseHeapMemory(): number | null {
  if (exposedGc === null) return null;
  const t0 = performance.now();
  exposedGc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  return performance.now() - t0;
}

/** Whether releaseHeapMemory can run (node was started with --expose-gc). */
export function canReleaseHeapMemory(): boolean {
  return exposedGc !== null;
}
