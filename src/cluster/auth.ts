// Authentication of the sync channel: TLS 1.3 with a pre-shared key read from a key file (each node
// id gets its own key derived from it), or mutual TLS with node certificates signed by a cluster CA.
// Builds the server and client TLS options and names the node a handshake proved.

import { createHmac } from 'node:crypto';
import { statSync } from 'node:fs';
import type { ConnectionOptions, TLSSocket, TlsOptions } from 'node:tls';
import { readRegularFile } from '../config/read-file.ts';
import { ClusterError } from '../errors.ts';
import { NODE_ID_PATTERN } from './frame.ts';

/** How nodes prove they belong to the cluster. */
export type ClusterAuth =
  | {
      readonly kind: 'psk';
      /** The cluster key (at least 32 bytes). */
      readonly key: Buffer;
    }
  | {
      readonly kind: 'tls';
      /** PEM certificate of this node (its subject CN is the node id), its key, and the cluster CA. */
      readonly cert: string;
      readonly key: string;
      readonly ca: string;
    };

/** Smallest key accepted, bytes. */
export const MIN_KEY_BYTES = 32;

/**
 * TLS 1.3 suites usable with a PSK: OpenSSL's PSK callback (what Node's `pskCallback` uses) binds
 * the key to SHA-256, so only the SHA-256 suites can resume it (checked on Node 24 / OpenSSL 3.5;
 * TLS_AES_256_GCM_SHA384 fails the handshake). The exchange is still (EC)DHE + PSK (psk_dhe_ke),
 * so a leaked key file does not decrypt recorded traffic.
 */
const PSK_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256';

/** Domain separation for derived keys (bump with the protocol if the derivation changes). */
const PSK_LABEL = 'seglb-cluster-psk-v1\u0000';

/**
 * Parses a key file's text: hex digits (whitespace around them ignored), at least 32 bytes, as
 * written by `openssl rand -hex 32`.
 * @throws ClusterError SEGLB_CLUSTER_KEY when it is not that
 */
export function parseClusterKey(text: string): Buffer {
  const hex = text.trim();
  if (!/^[0-9a-fA-F]+$/.test(hex) || hex.length % 2 !== 0) {
    throw new ClusterError(
      'SEGLB_CLUSTER_KEY',
      'the cluster key file must hold hex digits only (create it with `openssl rand -hex 32`)',
    );
  }
  if (hex.length / 2 < MIN_KEY_BYTES || hex.length > 1024) {
    throw new ClusterError(
      'SEGLB_CLUSTER_KEY',
      `the cluster key must be ${MIN_KEY_BYTES} to 512 bytes (64 to 1024 hex digits); got ${hex.length / 2} bytes`,
    );
  }
  return Buffer.from(hex, 'hex');
}

/**
 * Reads a key file.
 * @returns the key, and whether group or others may read the file (the caller warns)
 * @throws ClusterError SEGLB_CLUSTER_KEY when it cannot be read or is malformed
 */
export function readClusterKey(path: string): { key: Buffer; looseMode: boolean } {
  let text: string;
  let mode: number;
  try {
    text = readRegularFile(path, 'utf8');
    mode = statSync(path).mode;
  } catch (err) {
    throw new ClusterError(
      'SEGLB_CLUSTER_KEY',
      `cannot read the cluster key file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      { cause: err },
    );
  }
  return { key: parseClusterKey(text), looseMode: (mode & 0o077) !== 0 };
}

/**
 * Reads the PEM files of mutual TLS.
 * @throws ClusterError SEGLB_CLUSTER_KEY when one cannot be read
 */
export function readClusterTls(files: { certFile: string; keyFile: string; caFile: string }): ClusterAuth {
  const read = (path: string, what: string): string => {
    try {
      return readRegularFile(path, 'utf8');
    } catch (err) {
      throw new ClusterError(
        'SEGLB_CLUSTER_KEY',
        `cannot read the cluster ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
        { cause: err },
      );
    }
  };
  return {
    kind: 'tls',
    cert: read(files.certFile, 'certificate'),
    key: read(files.keyFile, 'private key'),
    ca: read(files.caFile, 'CA certificate'),
  };
}

/**
 * The PSK a node id uses: HMAC-SHA256(cluster key, label || node id). Binding the key to the id means
 * the identity a client presents is part of what the handshake proves.
 */
export function derivePsk(clusterKey: Buffer, nodeId: string): Buffer {
  return createHmac('sha256', clusterKey)
    .update(PSK_LABEL + nodeId)
    .digest();
}

/** The listener's TLS options, and what a handshake on it proved. */
export interface ServerAuth {
  readonly options: TlsOptions;
  /**
   * The node id an accepted connection proved: the PSK identity it presented, or its
   * certificate's CN under mutual TLS.
   */
  provenId(socket: TLSSocket): string | undefined;
}

/**
 * Options for the cluster listener.
 * @param handshakeTimeoutMs - a connection that has not finished TLS by then is dropped
 */
export function serverAuth(auth: ClusterAuth, handshakeTimeoutMs: number): ServerAuth {
  if (auth.kind === 'psk') {
    // Per listener, keyed by socket: nothing outlives the connection.
    const identities = new WeakMap<TLSSocket, string>();
    return {
      options: {
        minVersion: 'TLSv1.3',
        ciphers: PSK_CIPHERS,
        handshakeTimeout: handshakeTimeoutMs,
        pskCallback: (socket: TLSSocket, identity: string) => {
          if (!NODE_ID_PATTERN.test(identity)) return null;
          identities.set(socket, identity);
          return derivePsk(auth.key, identity);
        },
      },
      provenId: (socket) => identities.get(socket),
    };
  }
  return {
    options: {
      minVersion: 'TLSv1.3',
      handshakeTimeout: handshakeTimeoutMs,
      cert: auth.cert,
      key: auth.key,
      ca: auth.ca,
      requestCert: true,
      rejectUnauthorized: true,
    },
    provenId: certificateId,
  };
}

/** The subject CN of the remote certificate (mutual TLS). */
function certificateId(socket: TLSSocket): string | undefined {
  const cn = socket.getPeerCertificate()?.subject?.CN;
  return typeof cn === 'string' ? cn : undefined;
}

/**
 * Options for dialling a peer.
 * @param nodeId - this node's id (its PSK identity)
 */
export function clientTlsOptions(auth: ClusterAuth, nodeId: string): ConnectionOptions {
  // The peer's node id is checked after its hello (against its certificate); addresses in the
  // peers list may be IPs, so host name verification does not apply.
  const checkServerIdentity = () => undefined;
  if (auth.kind === 'psk') {
    const psk = derivePsk(auth.key, nodeId);
    return {
      minVersion: 'TLSv1.3',
      ciphers: PSK_CIPHERS,
      checkServerIdentity,
      pskCallback: () => ({ psk, identity: nodeId }),
    };
  }
  return {
    minVersion: 'TLSv1.3',
    cert: auth.cert,
    key: auth.key,
    ca: auth.ca,
    rejectUnauthorized: true,
    checkServerIdentity,
  };
}

/**
 * The node id a dialled connection proved for the server: its certificate CN under mutual TLS; a
 * PSK handshake proves only that the server holds the cluster key (undefined).
 */
export function provenServerId(auth: ClusterAuth, socket: TLSSocket): string | undefined {
  return auth.kind === 'tls' ? certificateId(socket) : undefined;
}
