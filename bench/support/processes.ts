// Child processes for the end-to-end benchmark (backends, proxies, seglb): started in the foreground,
// their output tail kept for error messages, all of them killed when the benchmark exits.

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import { setPriority } from 'node:os';

/** A foreground server process started by the benchmark. */
export interface ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** Last lines of stdout+stderr, for error messages. */
  tail(): string;
  /** SIGTERM, then SIGKILL after `graceMs`. Resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<ManagedProcess>();
/** Nice value for every child (0: unchanged); see setBenchNiceness. */
let niceness = 0;

/**
 * Runs every benchmark process (children from now on, and this process's main thread, where
 * autocannon runs) at nice value `n`. A negative value (root only) shields the measurement from
 * other work on a shared machine, at that work's expense.
 */
export function setBenchNiceness(n: number): void {
  niceness = n;
  if (n !== 0) setPriority(n);
}

/** `command args` wrapped in `nice -n N` when a niceness is set (all threads inherit it). */
export function niced(command: string, args: readonly string[]): [string, string[]] {
  return niceness === 0 ? [command, [...args]] : ['nice', ['-n', String(niceness), command, ...args]];
}

/** Short-lived children (a wrk run) to kill too if the benchmark stops early. */
const transient = new Set<ChildProcess>();

/** Registers a short-lived child (removed when it exits) so that killAll() stops it too. */
export function trackTransient(child: ChildProcess): void {
  transient.add(child);
  child.once('exit', () => transient.delete(child));
}

/** Kills every process still running, with its process group (synchronously: usable from 'exit'). */
export function killAll(): void {
  for (const p of running) signalGroup(p.child, 'SIGKILL');
  running.clear();
  for (const c of transient) c.kill('SIGKILL');
  transient.clear();
}

/**
 * Signals a child's whole process group (each child leads its own, see startProcess), so that
 * an nginx master's worker never outlives it; falls back to the child alone.
 */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    child.kill(signal);
  }
}

process.once('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });
}

/**
 * Starts a process; its output is read (so a full pipe never blocks it) and the last 40 lines kept.
 * @param name - label for messages
 * @param command - executable
 * @param args - arguments
 */
export function startProcess(name: string, command: string, args: readonly string[]): ManagedProcess {
  // detached: the child leads a new process group, which stop()/killAll() signal as a whole.
  const [cmd, argv] = niced(command, args);
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const lines: string[] = [];
  const keep = (d: Buffer) => {
    for (const l of d.toString().split('\n')) if (l.trim()) lines.push(l);
    if (lines.length > 40) lines.splice(0, lines.length - 40);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  child.on('error', (err) => lines.push(`spawn error: ${err.message}`));
  const exited = once(child, 'exit').catch(() => undefined);
  const proc: ManagedProcess = {
    name,
    child,
    tail: () => lines.join('\n'),
    async stop(graceMs = 3000) {
      running.delete(proc);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => signalGroup(child, 'SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      }
      // Whatever is left of the group (an nginx worker, a seglb that forked) goes too.
      signalGroup(child, 'SIGKILL');
    },
  };
  running.add(proc);
  return proc;
}

/** A TCP port free on `host` right now (bound to port 0, then released). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Waits until `host:port` accepts connections.
 * @throws when `proc` exits first or `timeoutMs` passes (with the process's output tail)
 */
export async function waitForPort(
  proc: ManagedProcess,
  host: string,
  port: number,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
      throw new Error(`${proc.name} exited before listening on ${host}:${port}:\n${proc.tail()}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, host);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) {
      throw new Error(`${proc.name} not listening on ${host}:${port} after ${timeoutMs} ms:\n${proc.tail()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
