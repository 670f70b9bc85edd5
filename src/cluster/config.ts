// The `cluster:` section of the config, seen from the cluster: the checks a JSON Schema cannot make
// (key file readable and well-formed, certificates that load and match node_id, timing order), and
// the ClusterNode options the runtime starts a node with.

import { createPrivateKey, X509Certificate } from 'node:crypto';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { readRegularFile } from '../config/read-file.ts';
import type { ClusterConfig } from '../config/types.ts';
import { ClusterError, type ErrorCode } from '../errors.ts';
import { readClusterKey } from './auth.ts';
import { NODE_ID_PATTERN } from './frame.ts';
import type { ClusterLog, ClusterNodeOptions } from './node.ts';

/** One problem with the cluster section, at a key path under `cluster`. */
export interface ClusterConfigProblem {
  readonly path: readonly (string | number)[];
  readonly message: string;
  readonly code?: ErrorCode;
}

/** The node id a config gives, or the host name when it gives none. */
export function clusterNodeId(cluster: Pick<ClusterConfig, 'node_id'>): string {
  return cluster.node_id ?? hostname();
}

/**
 * Checks what the schema cannot: exactly one of key_file and tls, that the files load (a key of at
 * least 32 bytes; a certificate and key that match, signed by the CA, with CN = node_id), and
 * heartbeat_ms < suspect_ms < dead_ms.
 * @param configDir - folder of the config file (relative paths are relative to it)
 */
export function checkClusterConfig(cluster: ClusterConfig, configDir: string): ClusterConfigProblem[] {
  const problems: ClusterConfigProblem[] = [];
  const nodeId = clusterNodeId(cluster);
  if (cluster.node_id === undefined && !NODE_ID_PATTERN.test(nodeId)) {
    problems.push({
      path: ['cluster'],
      message: `the host name "${nodeId}" is not a valid node id; set cluster.node_id (letters, digits, _.:-, at most 64)`,
    });
  }
  if (cluster.key_file === undefined && cluster.tls === undefined) {
    problems.push({
      path: ['cluster'],
      message:
        'the cluster channel must be authenticated: set key_file (create it with `openssl rand -hex 32`) or tls',
      code: 'SEGLB_CLUSTER_KEY',
    });
  } else if (cluster.key_file !== undefined && cluster.tls !== undefined) {
    problems.push({
      path: ['cluster', 'tls'],
      message: 'give key_file or tls, not both',
      code: 'SEGLB_CLUSTER_KEY',
    });
  }
  if (cluster.key_file !== undefined) {
    try {
      readClusterKey(resolve(configDir, cluster.key_file));
    } catch (err) {
      problems.push({
        path: ['cluster', 'key_file'],
        message: (err as Error).message,
        code: 'SEGLB_CLUSTER_KEY',
      });
    }
  }
  if (cluster.tls !== undefined) problems.push(...checkTlsFiles(cluster.tls, nodeId, configDir));
  const { heartbeat_ms: hb, suspect_ms: suspect, dead_ms: dead } = cluster;
  if (!(hb < suspect)) {
    problems.push({
      path: ['cluster', 'suspect_ms'],
      message: `suspect_ms (${suspect}) must be larger than heartbeat_ms (${hb})`,
    });
  }
  if (!(suspect < dead)) {
    problems.push({
      path: ['cluster', 'dead_ms'],
      message: `dead_ms (${dead}) must be larger than suspect_ms (${suspect})`,
    });
  }
  if (cluster.max_queue_bytes < cluster.max_frame_bytes) {
    problems.push({
      path: ['cluster', 'max_queue_bytes'],
      message: `max_queue_bytes (${cluster.max_queue_bytes}) must be at least max_frame_bytes (${cluster.max_frame_bytes})`,
    });
  }
  return problems;
}

function checkTlsFiles(
  tls: NonNullable<ClusterConfig['tls']>,
  nodeId: string,
  configDir: string,
): ClusterConfigProblem[] {
  const problems: ClusterConfigProblem[] = [];
  const read = (key: 'cert_file' | 'key_file' | 'ca_file'): string | undefined => {
    try {
      return readRegularFile(resolve(configDir, tls[key]), 'utf8');
    } catch (err) {
      problems.push({
        path: ['cluster', 'tls', key],
        message: `cannot read ${tls[key]}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        code: 'SEGLB_CLUSTER_KEY',
      });
      return undefined;
    }
  };
  const certPem = read('cert_file');
  const keyPem = read('key_file');
  const caPem = read('ca_file');
  const parse = (pem: string | undefined, key: 'cert_file' | 'ca_file'): X509Certificate | undefined => {
    if (pem === undefined) return undefined;
    try {
      return new X509Certificate(pem);
    } catch (err) {
      problems.push({
        path: ['cluster', 'tls', key],
        message: `not a PEM certificate: ${(err as Error).message}`,
        code: 'SEGLB_CLUSTER_KEY',
      });
      return undefined;
    }
  };
  const cert = parse(certPem, 'cert_file');
  const ca = parse(caPem, 'ca_file');
  if (keyPem !== undefined) {
    try {
      const key = createPrivateKey(keyPem);
      if (cert && !cert.checkPrivateKey(key)) {
        problems.push({
          path: ['cluster', 'tls', 'key_file'],
          message: 'the private key does not match cert_file',
          code: 'SEGLB_CLUSTER_KEY',
        });
      }
    } catch (err) {
      problems.push({
        path: ['cluster', 'tls', 'key_file'],
        message: `not a PEM private key: ${(err as Error).message}`,
        code: 'SEGLB_CLUSTER_KEY',
      });
    }
  }
  if (cert && ca && !cert.checkIssued(ca)) {
    problems.push({
      path: ['cluster', 'tls', 'cert_file'],
      message: 'the certificate is not signed by ca_file',
      code: 'SEGLB_CLUSTER_KEY',
    });
  }
  if (cert) {
    const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1];
    if (cn !== nodeId) {
      problems.push({
        path: ['cluster', 'tls', 'cert_file'],
        message: `the certificate's CN is "${cn ?? ''}" but the node id is "${nodeId}": peers check that they match`,
        code: 'SEGLB_CLUSTER_KEY',
      });
    }
  }
  return problems;
}

/**
 * The options to start this node's ClusterNode with, from a validated `cluster:` section.
 * @param configFile - path of the config file (relative file names are resolved against its folder)
 * @throws ClusterError SEGLB_CLUSTER_KEY when neither key_file nor tls is set (validation refuses that)
 */
export function clusterNodeOptions(
  cluster: ClusterConfig,
  opts: { configDir: string; log?: ClusterLog; policyVersion?: string | null },
): ClusterNodeOptions {
  const auth: Pick<ClusterNodeOptions, 'keyFile' | 'tls'> =
    cluster.key_file !== undefined
      ? { keyFile: resolve(opts.configDir, cluster.key_file) }
      : cluster.tls !== undefined
        ? {
            tls: {
              certFile: resolve(opts.configDir, cluster.tls.cert_file),
              keyFile: resolve(opts.configDir, cluster.tls.key_file),
              caFile: resolve(opts.configDir, cluster.tls.ca_file),
            },
          }
        : {};
  if (auth.keyFile === undefined && auth.tls === undefined) {
    throw new ClusterError('SEGLB_CLUSTER_KEY', 'cluster: set key_file or tls');
  }
  return {
    nodeId: clusterNodeId(cluster),
    listen: cluster.listen,
    peers: cluster.peers,
    ...auth,
    heartbeatMs: cluster.heartbeat_ms,
    suspectMs: cluster.suspect_ms,
    deadMs: cluster.dead_ms,
    antiEntropyMs: cluster.anti_entropy_ms,
    maxFrameBytes: cluster.max_frame_bytes,
    maxQueueBytes: cluster.max_queue_bytes,
    maxEntries: cluster.max_entries,
    tombstoneMs: cluster.tombstone_ms,
    maxClockSkewMs: cluster.max_clock_skew_ms,
    maxConnections: cluster.max_connections,
    policyVersion: opts.policyVersion ?? null,
    ...(opts.log === undefined ? {} : { log: opts.log }),
  };
}
