// Cluster test helpers: key files, clusters of ClusterNode instances on 127.0.0.x, polling until a
// condition holds, captured JSON logs, and a TCP forwarder that can be cut (a partition between two
// nodes: it stops forwarding without closing anything, as a dead switch port would).

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { ClusterNode, type ClusterNodeOptions } from '../../src/cluster/index.ts';

/** Writes a fresh cluster key file (hex, mode 600) in `dir`. @returns its path */
export function writeKeyFile(dir: string, name = 'cluster.key'): string {
  const file = join(dir, name);
  writeFileSync(file, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  return file;
}

/** A logger whose JSON lines are kept in `lines`. */
export function captureLog(): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line));
      done();
    },
  });
  return { log: pino({ level: 'debug' }, stream), lines };
}

/** Polls `check` every 2 ms until it returns true. @returns ms waited @throws on timeout */
export async function waitFor(check: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<number> {
  const t0 = performance.now();
  while (!check()) {
    if (performance.now() - t0 > timeoutMs)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
  return performance.now() - t0;
}

/**
 * Fast failure detection for tests (the defaults are 500/1500/5000/2000 ms), with enough slack for
 * two test files sharing two cores.
 */
export const FAST = { heartbeatMs: 50, suspectMs: 250, deadMs: 600, antiEntropyMs: 200 } as const;

/**
 * Starts `count` nodes n1..nN on 127.0.0.1..N (ephemeral ports), each with every node's address as
 * its peers list (its own included: a node skips itself), and waits until all links are up.
 */
export async function startCluster(
  count: number,
  options: Partial<ClusterNodeOptions> & { key?: Buffer } = {},
): Promise<ClusterNode[]> {
  const key = options.key ?? randomBytes(32);
  const nodes: ClusterNode[] = [];
  for (let i = 1; i <= count; i++) {
    nodes.push(
      await ClusterNode.start({ ...FAST, ...options, nodeId: `n${i}`, listen: `127.0.0.${i}:0`, key }),
    );
  }
  for (const n of nodes) n.setPeers(nodes.map((m) => m.address));
  await waitForMesh(nodes);
  return nodes;
}

/** Waits until every node sees every other one alive. */
export async function waitForMesh(nodes: readonly ClusterNode[], timeoutMs = 5000): Promise<void> {
  await waitFor(
    () =>
      nodes.every((n) => {
        const alive = n.status().peers.filter((p) => p.state === 'alive' && p.link !== null);
        return nodes.every((m) => m === n || alive.some((p) => p.nodeId === m.nodeId));
      }),
    timeoutMs,
    'a full mesh',
  );
}

/** Stops nodes, ignoring ones already stopped. */
export async function stopAll(nodes: readonly (ClusterNode | undefined)[]): Promise<void> {
  await Promise.all(nodes.map((n) => n?.stop()));
}

/** A TCP forwarder to one node that a test can cut and heal. */
export interface Forwarder {
  /** HOST:PORT to put in a peers list instead of the node's own address. */
  readonly address: string;
  /** Stops forwarding: bytes in flight and new connections are held, nothing is closed. */
  cut(): void;
  /** Forwards again; connections held while cut are dropped (as their TCP timers would). */
  heal(): void;
  close(): Promise<void>;
}

/** Starts a forwarder on `host` (ephemeral port) to `target` (HOST:PORT). */
export async function startForwarder(target: string, host = '127.0.0.1'): Promise<Forwarder> {
  const colon = target.lastIndexOf(':');
  const targetHost = target.slice(0, colon);
  const targetPort = Number(target.slice(colon + 1));
  let cut = false;
  const pairs = new Set<{ client: Socket; upstream: Socket | null }>();
  const server = createServer((client) => {
    const pair: { client: Socket; upstream: Socket | null } = { client, upstream: null };
    pairs.add(pair);
    client.on('error', () => {});
    client.on('close', () => {
      pair.upstream?.destroy();
      pairs.delete(pair);
    });
    if (cut) {
      client.pause(); // held: the dialler's handshake times out
      return;
    }
    const upstream = connect({ host: targetHost, port: targetPort });
    pair.upstream = upstream;
    upstream.on('error', () => client.destroy());
    upstream.on('close', () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, host);
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as AddressInfo).port;
  return {
    address: `${host}:${port}`,
    cut() {
      cut = true;
      for (const { client, upstream } of pairs) {
        client.unpipe();
        upstream?.unpipe();
        client.pause();
        upstream?.pause();
      }
    },
    heal() {
      cut = false;
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream?.destroy();
      }
      pairs.clear();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const { client, upstream } of pairs) {
          client.destroy();
          upstream?.destroy();
        }
        server.close(() => resolve());
      }),
  };
}

/**
 * Makes a cluster CA and node certificates (CN = node id) with the openssl command line.
 * @returns paths: ca certificate, and per node its certificate and key
 */
export function makeClusterCerts(
  dir: string,
  nodeIds: readonly string[],
  caName = 'ca',
): { ca: string; nodes: Record<string, { cert: string; key: string }> } {
  const ca = join(dir, `${caName}.crt`);
  const caKey = join(dir, `${caName}.key`);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  execFileSync(
    'openssl',
    ['req', '-x509', ...ec, '-keyout', caKey, '-out', ca, '-days', '2', '-subj', `/CN=${caName}`],
    {
      stdio: 'ignore',
    },
  );
  const nodes: Record<string, { cert: string; key: string }> = {};
  for (const id of nodeIds) {
    const key = join(dir, `${caName}-${id}.key`);
    const csr = join(dir, `${caName}-${id}.csr`);
    const cert = join(dir, `${caName}-${id}.crt`);
    execFileSync('openssl', ['req', ...ec, '-keyout', key, '-out', csr, '-subj', `/CN=${id}`], {
      stdio: 'ignore',
    });
    execFileSync(
      'openssl',
      ['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2'],
      { stdio: 'ignore' },
    );
    nodes[id] = { cert, key };
  }
  return { ca, nodes };
}
