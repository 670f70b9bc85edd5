// What a benchmark ran on and what it measured: the machine and tool versions, and the seglb source
// (commit, uncommitted src/ changes, a hash of src/'s contents), for the report and results files.

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { versionOf } from './servers.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The machine and the tools of a run. */
export interface MachineInfo {
  readonly cores: number;
  readonly cpuModel: string;
  /** Physical memory, bytes. */
  readonly memoryBytes: number;
  /** `uname -r`. */
  readonly kernel: string;
  /** PRETTY_NAME of /etc/os-release, or 'Linux'. */
  readonly os: string;
  readonly node: string;
  readonly autocannon: string;
  /** Version lines; null when not installed. */
  readonly wrk: string | null;
  readonly haproxy: string | null;
  readonly nginx: string | null;
}

/** Collects MachineInfo; pass the paths of the installed tools (null: not installed). */
export function machineInfo(nginx: string | null, haproxy: string | null, wrk: string | null): MachineInfo {
  const cpu = cpus();
  let acVersion = '?';
  try {
    const pkg = new URL('../../node_modules/autocannon/package.json', import.meta.url);
    acVersion = (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
  } catch {
    // not installed: reported as '?'
  }
  let os = 'Linux';
  try {
    os = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? os;
  } catch {
    // no os-release
  }
  return {
    cores: cpu.length,
    cpuModel: cpu[0]?.model.trim() ?? '?',
    memoryBytes: totalmem(),
    kernel: release(),
    os,
    node: process.version,
    autocannon: acVersion,
    wrk: wrk ? versionOf(wrk, ['--version']).replace(/ Copyright.*/, '') : null,
    haproxy: haproxy ? versionOf(haproxy, ['-v']).replace(/ - https.*/, '') : null,
    nginx: nginx ? versionOf(nginx, ['-v']) : null,
  };
}

/** Multi-line description for the start of a report. */
export function machineLines(m: MachineInfo): string {
  return [
    `machine: ${m.cores} cores (${m.cpuModel}), ${(m.memoryBytes / 2 ** 30).toFixed(0)} GiB, ` +
      `${m.os}, Linux ${m.kernel}, loopback only`,
    `node ${m.node}; autocannon ${m.autocannon}`,
    m.wrk ?? 'wrk: not installed',
    m.haproxy ?? 'haproxy: not installed',
    m.nginx ?? 'nginx: not installed',
  ].join('\n');
}

/** One-line description (README, results table header). */
export function machineLine(m: MachineInfo): string {
  const v = (s: string | null, re: RegExp) => (s ? (re.exec(s)?.[1] ?? s) : null);
  const tools = [
    `node ${m.node}`,
    `autocannon ${m.autocannon}`,
    m.wrk ? `wrk ${v(m.wrk, /wrk (\S+)/)}` : null,
    m.haproxy ? `HAProxy ${v(m.haproxy, /version (\S+)/)}` : null,
    m.nginx ? `nginx ${v(m.nginx, /nginx\/(\S+)/)}` : null,
  ].filter((x) => x !== null);
  return (
    `${m.cores} cores (${m.cpuModel}), ${(m.memoryBytes / 2 ** 30).toFixed(0)} GiB RAM, ${m.os}, ` +
    `Linux ${m.kernel}; ${tools.join(', ')}`
  );
}

/** The seglb code a run measured. */
export interface SourceInfo {
  /** Short commit hash, or 'unknown'. */
  readonly commit: string;
  /** src/ had uncommitted changes. */
  readonly dirty: boolean;
  /** First 12 hex digits of a SHA-256 over src/'s paths and contents. */
  readonly srcHash: string;
}

/**
 * What code is measured: the commit, whether src/ has uncommitted changes, and a hash of src/'s
 * contents (compared at the end of the run, since others may edit src/ meanwhile).
 */
export function sourceInfo(): SourceInfo {
  const git = (args: string[]) =>
    spawnSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' }).stdout?.trim() ?? '';
  return {
    commit: git(['rev-parse', '--short', 'HEAD']) || 'unknown',
    dirty: git(['status', '--porcelain', '--', 'src']) !== '',
    srcHash: hashTree(join(ROOT, 'src')),
  };
}

/** `abc1234 + uncommitted src/ changes, src/ content hash 0123456789ab`. */
export function sourceText(s: SourceInfo): string {
  return `${s.commit}${s.dirty ? ' + uncommitted src/ changes' : ''}, src/ content hash ${s.srcHash}`;
}

function hashTree(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) h.update(p).update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex').slice(0, 12);
}

/** A UTC time stamp usable in file names: ISO 8601 with '-' for ':' and no milliseconds. */
export function fileStamp(d: Date): string {
  return d
    .toISOString()
    .replace(/\.\d+Z$/, 'Z')
    .replace(/:/g, '-');
}
