// Persistence of runtime changes: the state file (policy operations, quarantine, backend states)
// that lets API changes survive a restart, and the append-only JSON-lines audit trail.

import { appendFileSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { Logger } from '../observe/log.ts';
import type { BackendAdminState } from '../pools/index.ts';
import type { PolicyOp } from './ops.ts';

/** What the state file holds. */
export interface RuntimeState {
  readonly version: 1;
  /** Policy operations applied on top of the config file, in order. */
  readonly policy_ops: readonly PolicyOp[];
  /** Live quarantine entries; `expiresAt` ms since the epoch, null for no expiry. */
  readonly quarantine: readonly { cidr: string; expiresAt: number | null; reason: string }[];
  /** Backend states set at runtime: [pool, backend address, state]. */
  readonly backend_states: readonly (readonly [string, string, BackendAdminState])[];
  /** Ids of replicated policy batches already applied (so a cluster catch-up does not apply them twice). */
  readonly applied_ids?: readonly string[];
}

/** The state of a fresh node. */
export const EMPTY_STATE: RuntimeState = Object.freeze({
  version: 1,
  policy_ops: [],
  quarantine: [],
  backend_states: [],
});

/**
 * Reads and writes the state file. Writes are atomic (temp file + rename); a failed write is logged,
 * remembered in `lastError` (shown in status), and retried with the next save: the running node
 * keeps working either way.
 */
export class StateStore {
  readonly file: string;
  readonly #log: Logger;
  /** The last write error (code and message), or null when the file is up to date. */
  lastError: string | null = null;

  constructor(file: string, log: Logger) {
    this.file = file;
    this.#log = log;
  }

  /**
   * @returns the saved state, EMPTY_STATE when there is no file
   * @throws SyntaxError when the file exists but is not valid JSON (the caller reports it as drift)
   */
  load(): RuntimeState {
    if (!existsSync(this.file)) return EMPTY_STATE;
    const parsed = JSON.parse(readFileSync(this.file, 'utf8')) as Partial<RuntimeState>;
    return {
      version: 1,
      policy_ops: Array.isArray(parsed.policy_ops) ? parsed.policy_ops : [],
      quarantine: Array.isArray(parsed.quarantine) ? parsed.quarantine : [],
      backend_states: Array.isArray(parsed.backend_states) ? parsed.backend_states : [],
      applied_ids: Array.isArray(parsed.applied_ids)
        ? parsed.applied_ids.filter((x) => typeof x === 'string')
        : [],
    };
  }

  /** Writes the state atomically. @returns false when the write failed (logged, see lastError). */
  save(state: RuntimeState): boolean {
    const tmp = `${this.file}.tmp-${process.pid}`;
    try {
      writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
      renameSync(tmp, this.file);
      this.lastError = null;
      return true;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      this.lastError = `${e.code ?? 'ERROR'}: ${e.message}`;
      this.#log.error(
        { code: 'SEGLB_ADMIN_STATE_WRITE', file: this.file, err: this.lastError },
        'state file not written; the change is live but not persisted',
      );
      return false;
    }
  }
}

/** One audit-trail entry. */
export interface AuditEntry {
  /** ISO 8601 time. */
  readonly time: string;
  /** Who: `token:NAME`, `signal:SIGHUP`, `cluster:NODE`, `startup`. */
  readonly actor: string;
  /** What: the operation(s), or `reload`, `quarantine_add` ... */
  readonly action: string;
  /** Details of the change (operations, entry, drift); never a secret. */
  readonly change: unknown;
  readonly oldVersion: number;
  readonly newVersion: number;
  readonly oldHash: string;
  readonly newHash: string;
}

/**
 * The audit trail: every change appended as one JSON line to the file and kept (last `keep`) in
 * memory for `GET /audit`. Write failures are logged and counted, never thrown.
 */
export class AuditTrail {
  readonly file: string | null;
  readonly #log: Logger;
  readonly #recent: AuditEntry[] = [];
  readonly #keep: number;
  /** Entries that could not be written to the file. */
  writeFailures = 0;

  /**
   * @param file - JSON-lines file, or null to keep the trail in memory only
   * @param keep - entries kept in memory
   */
  constructor(file: string | null, log: Logger, keep = 1000) {
    this.file = file;
    this.#log = log;
    this.#keep = keep;
    if (file && existsSync(file)) {
      try {
        const lines = readFileSync(file, 'utf8').trimEnd().split('\n').slice(-keep);
        for (const l of lines) if (l) this.#recent.push(JSON.parse(l) as AuditEntry);
      } catch (err) {
        log.warn(
          { file, err: String(err) },
          'audit trail could not be read back; continuing with an empty view',
        );
      }
    }
  }

  /** Appends one entry. */
  append(entry: Omit<AuditEntry, 'time'>): AuditEntry {
    const full: AuditEntry = { time: new Date().toISOString(), ...entry };
    this.#recent.push(full);
    if (this.#recent.length > this.#keep) this.#recent.shift();
    if (this.file) {
      try {
        appendFileSync(this.file, `${JSON.stringify(full)}\n`, { mode: 0o600 });
      } catch (err) {
        this.writeFailures++;
        this.#log.error(
          { code: 'SEGLB_ADMIN_STATE_WRITE', file: this.file, err: String(err) },
          'audit entry not written',
        );
      }
    }
    this.#log.info({ audit: full }, 'change applied');
    return full;
  }

  /** The last `limit` entries, oldest first. */
  recent(limit = 100): AuditEntry[] {
    return this.#recent.slice(-limit);
  }
}
