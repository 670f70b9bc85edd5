// Starts seglb in-process from inline YAML (a temp file, so positions and relative paths work as
// for a real file), or as a child process for signal tests.

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile } from '../../src/config/index.ts';
import { createLogger, type Logger } from '../../src/observe/log.ts';
import { type BoundVip, Runtime } from '../../src/runtime.ts';

/** A fresh temp folder for a test's files. */
export function tempDir(prefix = 'seglb-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** An admin token file line set and a cluster key that configs in tests may name (`tokens.txt`, `cluster.key`). */
export const TEST_TOKENS_FILE = 'test-admin read zzzzzzzzzzzzzzzzzzzzzzzz\n';
export const TEST_CLUSTER_KEY = `${'ab'.repeat(32)}\n`;

/**
 * Writes YAML to `seglb.yaml` in a temp folder, with a `tokens.txt` and a `cluster.key` beside it
 * (mode 0600) unless they exist, so `admin: { tokens_file: tokens.txt }` and
 * `cluster: { key_file: cluster.key }` load. @returns the config path
 */
export function writeConfig(yaml: string, dir = tempDir()): string {
  const file = join(dir, 'seglb.yaml');
  writeFileSync(file, yaml);
  const tokens = join(dir, 'tokens.txt');
  if (!existsSync(tokens)) writeFileSync(tokens, TEST_TOKENS_FILE, { mode: 0o600 });
  const key = join(dir, 'cluster.key');
  if (!existsSync(key)) writeFileSync(key, TEST_CLUSTER_KEY, { mode: 0o600 });
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

/** A running in-process seglb with its admin API (as `seglb run` wires it). */
export interface TestSeglbAdmin extends TestSeglb {
  readonly control: import('../../src/admin/index.ts').PolicyControl;
  readonly admin: import('../../src/admin/index.ts').AdminServer;
  /** Base URL of the admin API, e.g. http://127.0.0.1:PORT */
  readonly adminUrl: string;
  /** Tokens by role: read, operate, admin (names read1, operate1, admin1). */
  readonly tokens: Record<'read' | 'operate' | 'admin', string>;
  /** Calls the admin API; `token` defaults to the admin token, null sends none. */
  api(
    method: string,
    path: string,
    body?: unknown,
    token?: string | null,
    // biome-ignore lint/suspicious/noExplicitAny: tests read JSON bodies freely
  ): Promise<{ status: number; body: any }>;
}

/**
 * Starts seglb with an admin API on 127.0.0.1:0. The YAML must not contain `admin:`; it is added
 * (tokens file, state and audit files in the same temp folder) unless `adminYaml` is given.
 * @param dir - folder to use (pass the same one to restart with the same state file)
 */
export async function startSeglbAdmin(
  yaml: string,
  dir: string = tempDir(),
  adminYaml?: string,
  log: Logger = createLogger({ level: 'silent', format: 'json' }),
): Promise<TestSeglbAdmin> {
  const { prepareConfig, PolicyControl, AdminServer } = await import('../../src/admin/index.ts');
  const tokens = {
    read: 'r'.repeat(20) + '-read-token',
    operate: 'o'.repeat(20) + '-operate-token',
    admin: 'a'.repeat(20) + '-admin-token',
  };
  writeFileSync(
    join(dir, 'tokens.txt'),
    `# test tokens\nread1 read ${tokens.read}\noperate1 operate ${tokens.operate}\nadmin1 admin ${tokens.admin}\n`,
  );
  const file = writeConfig(
    `${yaml}\n${adminYaml ?? 'admin:\n  listen: "127.0.0.1:0"\n  tokens_file: tokens.txt\n'}`,
    dir,
  );
  const loaded = loadConfigFile(file);
  const stateFile = loaded.config.admin?.state_file ?? null;
  const prepared = prepareConfig(file, stateFile, log);
  const runtime = await Runtime.start(prepared.loaded, log);
  const control = new PolicyControl(
    runtime,
    prepared,
    stateFile,
    loaded.config.admin?.audit_file ?? null,
    log,
  );
  const admin = new AdminServer(control, log);
  const bound = await admin.listen();
  const adminUrl = `http://127.0.0.1:${bound.port}`;
  return {
    runtime,
    file,
    vips: runtime.boundVips(),
    control,
    admin,
    adminUrl,
    tokens,
    port(segment: string, index = 0) {
      const v = runtime.boundVips().filter((b) => b.segment === segment)[index];
      if (!v) throw new Error(`no VIP ${index} for segment ${segment}`);
      return v.port;
    },
    async stop(graceMs = 0) {
      await admin.close();
      await runtime.stop(graceMs);
    },
    async api(method: string, path: string, body?: unknown, token: string | null = tokens.admin) {
      const headers: Record<string, string> = {};
      if (token !== null) headers.authorization = `Bearer ${token}`;
      if (body !== undefined) headers['content-type'] = 'application/json';
      const res = await fetch(adminUrl + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON
      }
      return { status: res.status, body: parsed };
    },
  };
}
