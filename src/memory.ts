// Returning the memory a large config load used to the operating system.
//
// Parsing and compiling a 250k-prefix IP set allocates ~150 MB of short-lived objects. V8 keeps the
// pages it grew into (committed or pooled for reuse) and, under steady traffic, never runs the idle
// "memory reducer" that would give them back: measured, a seglb with the 246k-prefix country set
// sat at 440 MB RSS under load with 25-35 MB of live heap, 120-150 MB of it V8's page pool. One
// last-resort (memory-reducing) full GC right after a large load returns those pages: the same run
// then stays under 300 MB. V8 offers no public call for this; `--expose-gc` set at run time and the
// `gc` function of a fresh context is the documented way to reach it (Jest's --logHeapUsage does the
// same), so it is done once, here, and nowhere on the data path.

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Prefixes over all IP sets from which a config load is worth a memory-reducing GC. */
export const LARGE_LOAD_PREFIXES = 10_000;

type GcFunction = (options?: {
  type?: 'major' | 'minor';
  execution?: 'sync' | 'async';
  flavor?: string;
}) => void;

let gcFn: GcFunction | null | undefined;

function gcFunction(): GcFunction | null {
  if (gcFn !== undefined) return gcFn;
  try {
    const existing = (globalThis as { gc?: GcFunction }).gc;
    if (typeof existing === 'function') gcFn = existing;
    else {
      setFlagsFromString('--expose-gc');
      gcFn = runInNewContext('gc') as GcFunction;
    }
  } catch {
    gcFn = null; // not offered by this runtime: the memory is then reused, not returned
  }
  return gcFn;
}

/**
 * Runs one synchronous last-resort major GC, which also releases V8's pooled pages to the OS.
 * Pauses the event loop for the GC (measured 10-40 ms with 25-60 MB live): call it only after a
 * large config load (start-up, reload), never per request.
 * @returns the pause in ms, or null when the runtime does not offer a GC call
 */
export function releaseHeapMemory(): number | null {
  const gc = gcFunction();
  if (gc === null) return null;
  const t0 = performance.now();
  gc({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  return performance.now() - t0;
}
