// Memory of benchmark processes from /proc (Linux): resident set size of a process tree (an nginx
// master and its worker, a seglb process), sampled during a load run to keep the peak.

import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { childrenOf } from './cpu-usage.ts';

/** VmRSS of one process in bytes (null when it is gone or /proc is unavailable). */
export function rssBytes(pid: number): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
  return m?.[1] ? Number(m[1]) * 1024 : null;
}

/**
 * Sum of VmRSS over a process and all its descendants, in bytes (pages shared between them are
 * counted once per process). Null when the process is gone or /proc is unavailable.
 */
export function treeRssBytes(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  const own = rssBytes(pid);
  if (own === null) return null;
  let sum = own;
  for (const c of childrenOf(pid)) sum += treeRssBytes(c) ?? 0;
  return sum;
}

/** A running peak-RSS sampler; `stop()` returns the peak in bytes (null: never measured). */
export interface RssSampler {
  stop(): number | null;
}

/**
 * Samples the RSS of a process tree every `intervalMs` milliseconds (and once at start and at stop),
 * keeping the peak. With no pid, samples nothing and reports null.
 */
export function sampleRssPeak(pid: number | undefined, intervalMs = 250): RssSampler {
  let peak: number | null = null;
  const sample = () => {
    const v = treeRssBytes(pid);
    if (v !== null && (peak === null || v > peak)) peak = v;
  };
  if (pid === undefined) return { stop: () => null };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return peak;
    },
  };
}

/** process.memoryUsage() of a child, bytes. */
export interface HeapSample {
  readonly rss: number;
  readonly heapTotal: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
}

const HEAP_MARK = '@@seglb-bench-heap ';

/** Node flags that preload the heap probe (bench/support/heap-probe.ts) into a child. */
export function heapProbeFlags(): string[] {
  return ['--import', new URL('./heap-probe.ts', import.meta.url).href];
}

/**
 * Reads the heap of a child started with `heapProbeFlags()`: sends SIGUSR2 and waits for the marked
 * line on its stderr. Resolves null when no answer comes within `timeoutMs`.
 */
export function requestHeap(child: ChildProcess, timeoutMs = 2000): Promise<HeapSample | null> {
  const stderr = child.stderr;
  if (!stderr || child.pid === undefined) return Promise.resolve(null);
  return new Promise((resolve) => {
    let buffered = '';
    const finish = (v: HeapSample | null) => {
      clearTimeout(timer);
      stderr.off('data', onData);
      resolve(v);
    };
    const onData = (d: Buffer) => {
      buffered += d.toString();
      const at = buffered.indexOf(HEAP_MARK);
      if (at < 0) return;
      const end = buffered.indexOf('\n', at);
      if (end < 0) return;
      try {
        finish(JSON.parse(buffered.slice(at + HEAP_MARK.length, end)) as HeapSample);
      } catch {
        finish(null);
      }
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    stderr.on('data', onData);
    child.kill('SIGUSR2');
  });
}
