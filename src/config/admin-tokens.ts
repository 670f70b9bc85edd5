// Parses the admin API's bearer-token file: one token per line, `NAME ROLE TOKEN`, `#` comments.
// Only SHA-256 digests of the tokens are kept in memory, so no token text sits in the config object
// or can reach a log line.

import { createHash } from 'node:crypto';

/** Admin API roles, each including the ones before it. */
export const ADMIN_ROLES = ['read', 'operate', 'admin'] as const;
export type AdminRole = (typeof ADMIN_ROLES)[number];

/** One token as held in memory: its name, role and the SHA-256 digest of the token text. */
export interface AdminToken {
  readonly name: string;
  readonly role: AdminRole;
  /** 32 bytes. */
  readonly digest: Buffer;
}

/** A problem on one line of the token file (never quoting the token itself). */
export interface TokenFileError {
  readonly line: number;
  readonly col: number;
  readonly message: string;
}

/** Smallest token length accepted, in characters (16 random bytes in hex or base64 exceed it). */
export const MIN_TOKEN_LENGTH = 16;

/** SHA-256 of a token's text: the form tokens are compared in (with crypto.timingSafeEqual). */
export function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/**
 * Parses token-file text.
 * @param text - file contents: lines `NAME ROLE TOKEN`, blank lines and `#` comments ignored
 * @returns the tokens and the errors (duplicate names, unknown roles, short or duplicate tokens)
 */
export function parseTokenFile(text: string): { tokens: AdminToken[]; errors: TokenFileError[] } {
  const tokens: AdminToken[] = [];
  const errors: TokenFileError[] = [];
  const names = new Set<string>();
  const digests = new Set<string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const hash = raw.indexOf('#');
    const content = (hash >= 0 ? raw.slice(0, hash) : raw).trim();
    if (!content) return;
    const parts = content.split(/\s+/);
    const col = raw.indexOf(content) + 1;
    if (parts.length !== 3) {
      errors.push({ line, col, message: 'expected NAME ROLE TOKEN (three fields)' });
      return;
    }
    const [name, role, token] = parts as [string, string, string];
    if (!/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/.test(name)) {
      errors.push({ line, col, message: `invalid token name "${name}"` });
      return;
    }
    if (!(ADMIN_ROLES as readonly string[]).includes(role)) {
      errors.push({ line, col, message: `unknown role "${role}" (roles: ${ADMIN_ROLES.join(', ')})` });
      return;
    }
    if (token.length < MIN_TOKEN_LENGTH) {
      errors.push({
        line,
        col,
        message: `the token of "${name}" is shorter than ${MIN_TOKEN_LENGTH} characters`,
      });
      return;
    }
    if (names.has(name)) {
      errors.push({ line, col, message: `token name "${name}" appears twice` });
      return;
    }
    const digest = tokenDigest(token);
    const key = digest.toString('hex');
    if (digests.has(key)) {
      errors.push({ line, col, message: `the token of "${name}" is the same as an earlier one` });
      return;
    }
    names.add(name);
    digests.add(key);
    tokens.push({ name, role: role as AdminRole, digest });
  });
  return { tokens, errors };
}

/** True when `have` includes `need` (read < operate < admin). */
export function roleAllows(have: AdminRole, need: AdminRole): boolean {
  return ADMIN_ROLES.indexOf(have) >= ADMIN_ROLES.indexOf(need);
}
