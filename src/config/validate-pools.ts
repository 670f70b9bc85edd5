// Semantic checks of one pool that the JSON Schema cannot express (hash key names, a prime Maglev
// table, status ranges, duplicate backends), and the pool's files and secrets read once at load:
// the sticky-cookie HMAC key and the CA bundle for TLS to backends.

import { createSecureContext } from 'node:tls';
import type { ConfigIssue } from '../errors.ts';
import { readRegularFile } from './read-file.ts';
import type { PoolConfig } from './types.ts';
import type { KeyPathStep } from './yaml-positions.ts';

/** What a pool needs from files and the environment, read while validating (never logged). */
export interface PoolMaterial {
  /** HMAC key of the sticky cookie, or null without `sticky.cookie`. */
  readonly stickyKey: Buffer | null;
  /** PEM CA bundle for TLS to the backends, or null (system CAs, or no TLS). */
  readonly ca: string | null;
}

/** Shortest sticky-cookie key accepted, in bytes (HMAC-SHA256 keys should be ≥ 128 bits). */
export const MIN_STICKY_KEY_BYTES = 16;

type IssueAt = (path: readonly KeyPathStep[], message: string, target?: 'key' | 'value') => ConfigIssue;

/**
 * Checks one pool and reads its material.
 * @param name - pool name
 * @param pool - the pool after defaults; parts may be schema-invalid when the file failed the schema
 *   (every read here is defensive)
 * @param issues - where problems are appended
 * @param issue - builds a positioned issue
 * @returns the material, or null when a file or secret could not be read
 */
export function checkPool(
  name: string,
  pool: PoolConfig,
  issues: ConfigIssue[],
  issue: IssueAt,
): PoolMaterial | null {
  const base: KeyPathStep[] = ['pools', name];
  let ok = true;

  const seen = new Map<string, number>();
  (Array.isArray(pool.backends) ? pool.backends : []).forEach((b, i) => {
    if (!b || typeof b.address !== 'string') return;
    const prev = seen.get(b.address);
    if (prev !== undefined) {
      issues.push(
        issue(
          [...base, 'backends', i, 'address'],
          `backend ${b.address} is listed twice (also backends[${prev}]); give it one entry with a weight`,
        ),
      );
    }
    seen.set(b.address, i);
  });

  const hash = isMap(pool.hash) ? pool.hash : undefined;
  if (hash && pool.algorithm === 'consistent_hash') {
    if ((hash.key === 'header' || hash.key === 'cookie') && hash.name === undefined)
      issues.push(issue([...base, 'hash'], `hash key ${hash.key} needs a name (the ${hash.key} to hash)`));
    if ((hash.key === 'source' || hash.key === 'path') && hash.name !== undefined)
      issues.push(
        issue(
          [...base, 'hash', 'name'],
          `name is only for hash key header or cookie, not ${hash.key}`,
          'key',
        ),
      );
  }
  // Only within the schema's range (101..5000011): outside it the schema has already said so, and
  // the prime search must not run on huge values (at 2^53, n + 1 === n: an endless loop).
  if (
    hash &&
    typeof hash.table_size === 'number' &&
    hash.table_size >= MIN_TABLE_SIZE &&
    hash.table_size <= MAX_TABLE_SIZE &&
    !isPrime(hash.table_size)
  ) {
    issues.push(
      issue(
        [...base, 'hash', 'table_size'],
        `${hash.table_size} is not a prime (Maglev needs one); nearest primes: ${previousPrime(hash.table_size)}, ${nextPrime(hash.table_size)}`,
      ),
    );
  }

  const statuses =
    isMap(pool.health_check) && isMap(pool.health_check.http)
      ? pool.health_check.http.expect_status
      : undefined;
  if (Array.isArray(statuses)) {
    statuses.forEach((text, i) => {
      if (typeof text !== 'string') return;
      const [lo, hi] = text.split('-').map(Number);
      if (hi !== undefined && lo !== undefined && hi < lo)
        issues.push(
          issue(
            [...base, 'health_check', 'http', 'expect_status', i],
            `range ${text} is empty (${lo} > ${hi})`,
          ),
        );
    });
  }

  let stickyKey: Buffer | null = null;
  const cookie = isMap(pool.sticky) && isMap(pool.sticky.cookie) ? pool.sticky.cookie : undefined;
  if (cookie) {
    const path = [...base, 'sticky', 'cookie'];
    if ((cookie.key_file === undefined) === (cookie.key_env === undefined)) {
      const why =
        cookie.key_file === undefined ? 'the HMAC key is missing' : 'both key_file and key_env are given';
      issues.push(issue(path, `${why}: give exactly one of key_file or key_env (keys are never inline)`));
      ok = false;
    } else if (cookie.key_file !== undefined) {
      try {
        stickyKey = trimKey(readRegularFile(cookie.key_file));
      } catch (err) {
        issues.push(issue([...path, 'key_file'], `cannot read ${cookie.key_file}: ${errnoOf(err)}`));
        ok = false;
      }
    } else {
      const value = process.env[cookie.key_env as string];
      if (!value) {
        issues.push(issue([...path, 'key_env'], `environment variable ${cookie.key_env} is not set`));
        ok = false;
      } else stickyKey = trimKey(Buffer.from(value, 'utf8'));
    }
    if (stickyKey !== null && stickyKey.length < MIN_STICKY_KEY_BYTES) {
      const where = cookie.key_file !== undefined ? 'key_file' : 'key_env';
      issues.push(
        issue(
          [...path, where],
          `the HMAC key has ${stickyKey.length} bytes; at least ${MIN_STICKY_KEY_BYTES} are needed`,
        ),
      );
      ok = false;
    }
  }

  let ca: string | null = null;
  const tls = isMap(pool.tls) ? pool.tls : undefined;
  if (tls && typeof tls.ca_file === 'string') {
    const path = [...base, 'tls', 'ca_file'];
    try {
      ca = readRegularFile(tls.ca_file, 'utf8');
      // createSecureContext ignores text without PEM blocks: that would trust nothing, silently.
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no "BEGIN CERTIFICATE" block');
      createSecureContext({ ca });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      issues.push(
        issue(
          path,
          e.code?.startsWith('E') && !e.code.startsWith('ERR_')
            ? `cannot read ${tls.ca_file}: ${e.code}`
            : `${tls.ca_file} is not a PEM CA bundle: ${e.message}`,
        ),
      );
      ok = false;
    }
  }
  return ok ? { stickyKey, ca } : null;
}

/** A key file usually ends with a newline that is not meant to be part of the key. */
function trimKey(raw: Buffer): Buffer {
  let end = raw.length;
  while (end > 0 && (raw[end - 1] === 0x0a || raw[end - 1] === 0x0d)) end--;
  return raw.subarray(0, end);
}

function isMap<T>(v: T | undefined | null): v is T {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The schema's bounds for pools.NAME.hash.table_size. */
const MIN_TABLE_SIZE = 101;
const MAX_TABLE_SIZE = 5_000_011;

function isPrime(n: number): boolean {
  if (!Number.isInteger(n) || n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

function nextPrime(n: number): number {
  let p = Math.floor(n) + 1;
  while (!isPrime(p)) p++;
  return p;
}

function previousPrime(n: number): number {
  let p = Math.ceil(n) - 1;
  while (p > 2 && !isPrime(p)) p--;
  return p;
}

function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? String(err);
}
