// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function, overall and for
// seglb's own src/ files, plus the share spent in src/, node_modules, node internals, GC and idle.

import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Self time of one function. */
export interface FunctionTime {
  readonly name: string;
  /** `path:line` (path relative to the project root when inside it). */
  readonly where: string;
  readonly category: string;
  readonly ms: number;
  /** Share of all sampled time (idle included). */
  readonly share: number;
}

export interface ProfileSummary {
  readonly totalMs: number;
  /** Share of sampled time by category. */
  readonly categories: { category: string; ms: number; share: number }[];
  readonly functions: FunctionTime[];
  /**
   * Total time (self + callees) of seglb's src/ functions: where node and undici work is started
   * from. A function appearing twice on one stack is counted once per stack frame (rare here).
   */
  readonly srcInclusive: FunctionTime[];
}

/**
 * Reads and summarises a profile.
 * @param file - .cpuprofile path
 * @param root - project root URL prefix (file:///...) to shorten paths and tell src/ apart
 */
export function summariseCpuProfile(file: string, root: string): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    // timeDeltas[i] is the time before sample i; attribute the following interval to it instead.
    const dt = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
  }
  const totalUs = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const fns = new Map<string, { name: string; where: string; category: string; us: number }>();
  const cats = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (!n) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    const path = url.startsWith(root) ? url.slice(root.length) : url;
    const category = categorise(functionName, path);
    const where = path ? `${path}:${lineNumber + 1}` : '';
    const key = `${functionName}@${where}`;
    const f = fns.get(key) ?? { name: functionName || '(anonymous)', where, category, us: 0 };
    f.us += us;
    fns.set(key, f);
    cats.set(category, (cats.get(category) ?? 0) + us);
  }
  const share = (us: number) => (totalUs ? us / totalUs : 0);
  // Inclusive time: post-order over the call tree from the root (node 1).
  const inclusive = new Map<number, number>();
  const total = (id: number): number => {
    const n = byId.get(id);
    let t = selfUs.get(id) ?? 0;
    for (const c of n?.children ?? []) t += total(c);
    inclusive.set(id, t);
    return t;
  };
  const rootId = profile.nodes[0]?.id;
  if (rootId !== undefined) total(rootId);
  const srcFns = new Map<string, { name: string; where: string; us: number }>();
  for (const n of profile.nodes) {
    const { functionName, url, lineNumber } = n.callFrame;
    if (!url.startsWith(`${root}src/`)) continue;
    const where = `${url.slice(root.length)}:${lineNumber + 1}`;
    const key = `${functionName}@${where}`;
    const f = srcFns.get(key) ?? { name: functionName || '(anonymous)', where, us: 0 };
    f.us += inclusive.get(n.id) ?? 0;
    srcFns.set(key, f);
  }
  return {
    totalMs: totalUs / 1000,
    categories: [...cats]
      .map(([category, us]) => ({ category, ms: us / 1000, share: share(us) }))
      .sort((a, b) => b.ms - a.ms),
    functions: [...fns.values()]
      .map((f) => ({
        name: f.name,
        where: f.where,
        category: f.category,
        ms: f.us / 1000,
        share: share(f.us),
      }))
      .sort((a, b) => b.ms - a.ms),
    srcInclusive: [...srcFns.values()]
      .map((f) => ({
        name: f.name,
        where: f.where,
        category: 'seglb src/',
        ms: f.us / 1000,
        share: share(f.us),
      }))
      .sort((a, b) => b.ms - a.ms),
  };
}

function categorise(name: string, path: string): string {
  if (name === '(idle)') return 'idle';
  if (name === '(garbage collector)') return 'GC';
  if (name === '(program)') return 'program (native, unattributed)';
  if (path.startsWith('src/')) return 'seglb src/';
  if (path.includes('node_modules/undici/')) return 'undici';
  if (path.includes('node_modules/')) return 'other node_modules';
  if (path.startsWith('node:')) return 'node internals (JS)';
  return 'native / builtins';
}
