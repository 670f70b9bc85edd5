// The replicated keyspaces and what a valid key and value are in each: membership, quarantine,
// runtime policy changes, backend health per node, and source stickiness. Converts registers to and
// from their wire form, checking everything a peer sent.

import { formatIPv4, parseCidr, unmapV4 } from '../net/index.ts';
import { NODE_ID_PATTERN } from './frame.ts';
import type { Stamp } from './hlc.ts';
import { makeRegister, type Register } from './lww-map.ts';
import type { WireRegister } from './protocol.ts';

/** Names of the keyspaces, in the order digests are exchanged. */
export const KEYSPACES = ['members', 'quarantine', 'policy', 'health', 'sticky'] as const;
export type KeyspaceName = (typeof KEYSPACES)[number];

/** What a node says about itself (key: its node id; only that node writes it). */
export interface MemberInfo {
  /** Its cluster listen address. */
  readonly listen: string;
  /** Its epoch (start time based; changes on every restart). */
  readonly epoch: number;
  /** The policy version (hash) it runs; null before the runtime set one. */
  readonly policyVersion: string | null;
}

/** A quarantine register's value (the CIDR is the key, the expiry the register's). */
export interface QuarantineValue {
  readonly reason: string;
  readonly addedAt: number;
}

/** A backend state as one node sees it. */
export type BackendState = 'up' | 'down';

/** Longest key, reason, backend name or policy id accepted. */
export const MAX_KEY_LENGTH = 512;
export const MAX_REASON_LENGTH = 512;

/** Checks for one keyspace's keys and values. */
export interface KeyspaceRules<V> {
  readonly name: KeyspaceName;
  /**
   * @param key - the register key
   * @param origin - node that wrote it (single-writer keyspaces require it to match the key)
   */
  checkKey(key: string, origin: string): boolean;
  /** @returns true when `value` is a valid value of this keyspace */
  checkValue(value: unknown): value is V;
}

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const shortString = (v: unknown, max: number): v is string =>
  typeof v === 'string' && v.length > 0 && v.length <= max;

/**
 * The canonical text of a CIDR or address, or undefined. IPv4-mapped IPv6 is written as IPv4, as
 * src/policy's Quarantine does (unmapCidr), so both sides key an entry the same way.
 */
export function canonicalCidr(text: string): string | undefined {
  try {
    const c = parseCidr(text);
    if (c.family !== 6 || c.prefixLength < 96) return c.text;
    const v4 = unmapV4(c.v6);
    return v4 < 0 ? c.text : parseCidr(`${formatIPv4(v4)}/${c.prefixLength - 96}`).text;
  } catch {
    return undefined;
  }
}

/** Health keys: `node \0 pool \0 backend`; only `node` writes them. */
export function healthKey(node: string, pool: string, backend: string): string {
  return `${node}\u0000${pool}\u0000${backend}`;
}

/** Splits a health key. @returns [node, pool, backend] or undefined when malformed */
export function splitHealthKey(key: string): [string, string, string] | undefined {
  const parts = key.split('\u0000');
  if (parts.length !== 3 || parts.some((p) => p.length === 0)) return undefined;
  return parts as [string, string, string];
}

export const MEMBERS: KeyspaceRules<MemberInfo> = {
  name: 'members',
  checkKey: (key, origin) => key === origin && NODE_ID_PATTERN.test(key),
  checkValue: (v): v is MemberInfo =>
    isObj(v) &&
    shortString(v['listen'], 300) &&
    Number.isSafeInteger(v['epoch']) &&
    (v['policyVersion'] === null || shortString(v['policyVersion'], 128)),
};

export const QUARANTINE: KeyspaceRules<QuarantineValue> = {
  name: 'quarantine',
  checkKey: (key) => key.length <= 64 && canonicalCidr(key) === key,
  checkValue: (v): v is QuarantineValue =>
    isObj(v) &&
    typeof v['reason'] === 'string' &&
    v['reason'].length <= MAX_REASON_LENGTH &&
    Number.isSafeInteger(v['addedAt']),
};

export const POLICY: KeyspaceRules<unknown> = {
  name: 'policy',
  checkKey: (key) => shortString(key, 128),
  // Opaque to the cluster: any JSON but null (null marks a tombstone on the wire).
  checkValue: (v): v is unknown => v !== null && v !== undefined,
};

export const HEALTH: KeyspaceRules<BackendState> = {
  name: 'health',
  checkKey: (key, origin) => key.length <= MAX_KEY_LENGTH && splitHealthKey(key)?.[0] === origin,
  checkValue: (v): v is BackendState => v === 'up' || v === 'down',
};

export const STICKY: KeyspaceRules<string> = {
  name: 'sticky',
  checkKey: (key) => shortString(key, MAX_KEY_LENGTH),
  checkValue: (v): v is string => shortString(v, MAX_KEY_LENGTH),
};

/** A register's wire form. */
export function toWire(reg: Register<unknown>): WireRegister {
  const exp = reg.expiresAt === Number.POSITIVE_INFINITY ? null : reg.expiresAt;
  return reg.value === null
    ? [reg.key, reg.stamp.wall, reg.stamp.counter, reg.stamp.node, exp]
    : [reg.key, reg.stamp.wall, reg.stamp.counter, reg.stamp.node, exp, reg.value];
}

/**
 * A register from its wire form, fully checked.
 * @returns undefined when anything about it is invalid
 */
export function fromWire<V>(rules: KeyspaceRules<V>, w: unknown): Register<V> | undefined {
  if (!Array.isArray(w) || (w.length !== 5 && w.length !== 6)) return undefined;
  const [key, wall, counter, node, exp] = w as unknown[];
  if (
    typeof key !== 'string' ||
    !Number.isSafeInteger(wall) ||
    (wall as number) < 0 ||
    !Number.isSafeInteger(counter) ||
    (counter as number) < 0 ||
    typeof node !== 'string' ||
    !NODE_ID_PATTERN.test(node) ||
    !(exp === null || (Number.isSafeInteger(exp) && (exp as number) >= 0)) ||
    !rules.checkKey(key, node)
  ) {
    return undefined;
  }
  // A tombstone's expiresAt is when the removal was made; one without it could never be forgotten.
  if (w.length === 5 && exp === null) return undefined;
  let value: V | null = null;
  if (w.length === 6) {
    if (!rules.checkValue(w[5])) return undefined;
    value = w[5];
  }
  const stamp: Stamp = { wall: wall as number, counter: counter as number, node };
  return makeRegister(key, stamp, exp === null ? Number.POSITIVE_INFINITY : (exp as number), value);
}
