import { RadixBuilder } from './src/policy/radix.ts';
// replicate synthetic v6 quickly: measure hit lookups time vs set size
function prng(seed: number) { let a = seed >>> 0; return () => { a = (a + 0x6d2b79f5) | 0; let t = Math.imul(a ^ (a >>> 15), 1 | a); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return (t ^ (t >>> 14)) >>> 0; }; }
for (const count of [10000, 100000, 1000000]) {
  const rand = prng(1);
  const allocs = Math.max(1000, count >>> 5);
  const tops = Array.from({length: allocs}, () => (0x20000000 | (rand() & 0x1fffffff)) >>> 0);
  const b = new RadixBuilder(6);
  const keys: number[][] = [];
  for (let i = 0; i < count; i++) {
    const w = [tops[rand() % allocs]!, rand() & 0xffff0000, 0, 0];
    b.insertV6(w, 48, i & 1023); keys.push(w);
  }
  const t = b.build({ merge: Math.min, inherit: (_a, o) => o });
  const N = 1 << 20; const A = new Uint32Array(N * 4);
  for (let i = 0; i < N; i++) { const k = keys[rand() % count]!; A[i*4] = k[0]!; A[i*4+1] = k[1]! | (rand() & 0xffff); A[i*4+2] = rand(); A[i*4+3] = rand(); }
  let s = 0; for (let r = 0; r < 2; r++) for (let i = 0; i < A.length; i += 4) s += t.lookupV6(A[i]!, A[i+1]!, A[i+2]!, A[i+3]!);
  const t0 = performance.now(); for (let r = 0; r < 3; r++) for (let i = 0; i < A.length; i += 4) s += t.lookupV6(A[i]!, A[i+1]!, A[i+2]!, A[i+3]!);
  const ms = performance.now() - t0;
  console.log(count, t.stats(), (ms * 1e6 / (3 * N)).toFixed(0), 'ns', s);
}
