// CPU time of benchmark processes from /proc (Linux): a process tree (nginx master + worker), this
// process, and this process's finished children (wrk), so each run can say how many cores each side
// used on a box shared by load generator, proxy and backend.

import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ: 100 on Linux builds in practice). */
const TICKS_PER_SECOND = 100;

/** utime, stime (fields 14, 15) and cutime+cstime (16, 17) of /proc/<pid>/stat, in ms. */
function statTimes(pid: number | 'self'): { user: number; sys: number; reapedChildren: number } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces; fields after it start past the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const tick = 1000 / TICKS_PER_SECOND;
  return {
    user: Number(f[11]) * tick,
    sys: Number(f[12]) * tick,
    reapedChildren: (Number(f[13]) + Number(f[14])) * tick,
  };
}

/** Direct children of a process (from /proc/<pid>/task/<tid>/children; empty when unavailable). */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  try {
    for (const tid of readdirTasks(pid)) {
      const text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (text) for (const c of text.split(/\s+/)) out.push(Number(c));
    }
  } catch {
    // process gone or no /proc children support
  }
  return out;
}

function readdirTasks(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`);
}

/** CPU ms used so far (user, kernel) by a process and all its descendants (null when unavailable). */
export function treeCpuMs(pid: number | undefined): { user: number; sys: number } | null {
  if (pid === undefined) return null;
  const t = statTimes(pid);
  if (t === null) return null;
  const sum = { user: t.user, sys: t.sys };
  for (const c of childrenOf(pid)) {
    const ct = treeCpuMs(c);
    sum.user += ct?.user ?? 0;
    sum.sys += ct?.sys ?? 0;
  }
  return sum;
}

/** CPU ms used so far by this process plus its children already reaped (finished wrk runs). */
export function selfAndReapedCpuMs(): number {
  const t = statTimes('self');
  if (t === null) {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  }
  return t.user + t.sys + t.reapedChildren;
}

/**
 * CPU ms spent by the whole machine in user and system mode so far (first line of /proc/stat,
 * user+nice+system; irq/softirq excluded because loopback packet processing lands there and is
 * not charged to any process). Compared with the benchmark's own processes it shows load from
 * elsewhere on the machine. Null when /proc is unavailable.
 */
export function machineBusyMs(): number | null {
  let text: string;
  try {
    text = readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  const f = (text.split('\n')[0] ?? '').trim().split(/\s+/);
  return (Number(f[1]) + Number(f[2]) + Number(f[3])) * (1000 / TICKS_PER_SECOND);
}
