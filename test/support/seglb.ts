// Starts seglb in-process from inline YAML (a temp file, so positions and relative paths work as
// for a real file), or as a child process for signal tests.

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile } from '../../src/config/index.ts';
import { createLogger } from '../../src/observe/log.ts';
import { type BoundVip, Runtime } from '../../src/runtime.ts';

/** A fresh temp folder for a test's files. */
export function tempDir(prefix = 'seglb-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Writes YAML to a temp file. @returns its path */
export function writeConfig(yaml: string, dir = tempDir()): string {
  const file = join(dir, 'seglb.yaml');
  writeFileSync(file, yaml);
  return file;
}

/** A running in-process seglb. */
export interface TestSeglb {
  readonly runtime: Runtime;
  readonly file: string;
  /** Bound VIPs in config order. */
  readonly vips: BoundVip[];
  /** The bound port of a segment's n-th VIP. */
  port(segment: string, index?: number): number;
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts seglb from YAML text.
 * @param yaml - a full config; VIPs should listen on port 0 so tests never clash
 * @param dir - folder for the config file (for relative ipset/cert paths)
 */
export async function startSeglb(yaml: string, dir?: string): Promise<TestSeglb> {
  const file = writeConfig(yaml, dir);
  const runtime = await Runtime.start(
    loadConfigFile(file),
    createLogger({ level: 'silent', format: 'json' }),
  );
  const vips = runtime.boundVips();
  return {
    runtime,
    file,
    vips,
    port(segment: string, index = 0) {
      const v = runtime.boundVips().filter((b) => b.segment === segment)[index];
      if (!v) throw new Error(`no VIP ${index} for segment ${segment}`);
      return v.port;
    },
    stop: (graceMs = 0) => runtime.stop(graceMs),
  };
}

/** A seglb child process started with `seglb run -c FILE` (JSON logs on stdout). */
export interface SeglbProcess {
  readonly child: ChildProcess;
  /** Every JSON log line so far. */
  readonly logs: Record<string, unknown>[];
  /** Resolves with the first log line whose msg matches. */
  waitForLog(msg: string | RegExp, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/** Runs the CLI as a child process on Node 24 (the same binary as this test). */
export function spawnSeglb(args: readonly string[]): SeglbProcess {
  const child = spawn(process.execPath, [join(import.meta.dirname, '../../src/cli/main.ts'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  const waiters: {
    test: (l: Record<string, unknown>) => boolean;
    resolve: (l: Record<string, unknown>) => void;
  }[] = [];
  let buffer = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (d: string) => {
    buffer += d;
    let nl = buffer.indexOf('\n');
    while (nl >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      nl = buffer.indexOf('\n');
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        logs.push(parsed);
        for (const w of [...waiters]) {
          if (w.test(parsed)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(parsed);
          }
        }
      } catch {
        // not a JSON line
      }
    }
  });
  child.stderr?.resume();
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return {
    child,
    logs,
    exited,
    waitForLog(msg, timeoutMs = 10_000) {
      const test = (l: Record<string, unknown>) =>
        typeof msg === 'string' ? l.msg === msg : msg.test(String(l.msg));
      const found = logs.find(test);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no log line ${String(msg)} within ${timeoutMs} ms`)),
          timeoutMs,
        );
        waiters.push({
          test,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
  };
}
