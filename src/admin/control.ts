// The policy controller: the one place that changes the running configuration. API operations,
// file reloads and restored state all go through it: text edit -> the same validation as the file ->
// new snapshot swapped in -> state file -> audit trail.

import { randomBytes } from 'node:crypto';
import { renameSync } from 'node:fs';
import { type LoadedConfig, loadConfigText, readConfigText } from '../config/index.ts';
import { AdminError, ConfigError, type ConfigIssue, SeglbError } from '../errors.ts';
import type { Logger } from '../observe/log.ts';
import type { QuarantineEntry } from '../policy/index.ts';
import type { BackendAdminState } from '../pools/index.ts';
import type { Runtime, Snapshot } from '../runtime.ts';
import { applyPolicyOps, compactOps, type PolicyOp } from './ops.ts';
import { AuditTrail, EMPTY_STATE, type RuntimeState, StateStore } from './state.ts';

/** An operation that no longer applies to the file (kept out of the running policy, reported). */
export interface Drift {
  readonly op: PolicyOp;
  readonly error: string;
}

/** The config to start with, prepared from the file and the saved runtime state. */
export interface PreparedConfig {
  readonly loaded: LoadedConfig;
  readonly fileText: string;
  readonly ops: PolicyOp[];
  readonly drift: Drift[];
  readonly state: RuntimeState;
}

/**
 * Reads the config file and re-applies the saved runtime operations (each one validated; one that
 * no longer applies is dropped and reported as drift, never silently).
 * @param file - config file path
 * @param stateFile - state file path, or null when runtime changes are not persisted
 * @param fileLoaded - the file as already loaded by the caller (default: read and validate it)
 * @throws ConfigError for an invalid file (the caller exits 2)
 */
export function prepareConfig(
  file: string,
  stateFile: string | null,
  log: Logger,
  fileLoaded: LoadedConfig = loadConfigText(readConfigText(file), file),
): PreparedConfig {
  const fileText = fileLoaded.text;
  let state = EMPTY_STATE;
  if (stateFile) {
    try {
      state = new StateStore(stateFile, log).load();
    } catch (err) {
      // Keep the unreadable file for the operator: the first save would otherwise overwrite it and
      // the runtime changes it held would be lost without a trace.
      const aside = `${stateFile}.unreadable-${Date.now()}`;
      let movedTo: string | null = null;
      try {
        renameSync(stateFile, aside);
        movedTo = aside;
      } catch {
        // left where it is; the error below still says so
      }
      log.error(
        { file: stateFile, movedTo, err: String(err) },
        'state file unreadable; starting from the config file alone',
      );
    }
  }
  const { ops, drift, loaded } = replayOps(fileText, file, state.policy_ops, fileLoaded);
  for (const d of drift)
    log.warn({ op: d.op, error: d.error }, 'runtime change no longer applies to the config file (drift)');
  return { loaded, fileText, ops, drift, state };
}

/** Applies ops one by one; those that fail (or make the config invalid) become drift. */
function replayOps(
  fileText: string,
  file: string,
  ops: readonly PolicyOp[],
  fileLoaded: LoadedConfig,
): { ops: PolicyOp[]; drift: Drift[]; loaded: LoadedConfig; text: string } {
  if (ops.length === 0) return { ops: [], drift: [], loaded: fileLoaded, text: fileText };
  // The common case: every operation still applies. One edit and one validation, not one per op.
  try {
    const text = applyPolicyOps(fileText, ops);
    return { ops: [...ops], drift: [], loaded: loadConfigText(text, file), text };
  } catch {
    // some operation no longer applies: find which, one by one
  }
  const kept: PolicyOp[] = [];
  const drift: Drift[] = [];
  let text = fileText;
  let loaded = fileLoaded;
  for (const op of ops) {
    try {
      const next = applyPolicyOps(text, [op]);
      loaded = loadConfigText(next, file);
      text = next;
      kept.push(op);
    } catch (err) {
      drift.push({ op, error: err instanceof SeglbError ? err.message : String(err) });
    }
  }
  return { ops: kept, drift, loaded, text };
}

/**
 * Told about every local change so it can be replicated to cluster peers (see cluster-link.ts).
 * Calls happen after the change is live; they must not throw.
 */
export interface PolicyReplicator {
  quarantineAdded(entry: QuarantineEntry): void;
  quarantineRemoved(cidr: string): void;
  /** Policy operations applied locally, with a cluster-wide id. */
  opsApplied(id: string, ops: readonly PolicyOp[], actor: string): void;
  /** A new snapshot is live (policy version/hash changed). */
  snapshotChanged(snap: Snapshot): void;
}

/**
 * Changes the running configuration. One per runtime; changes are serialised (each waits for the
 * previous one), so versions are applied in order.
 */
export class PolicyControl {
  /** Set by the cluster link when a cluster is configured. */
  replicator: PolicyReplicator | null = null;
  /** Cluster status for GET /status, set by the cluster link. */
  clusterStatus: (() => unknown) | null = null;
  /** Ids of replicated operation batches already applied here (local or remote). */
  readonly #appliedIds = new Set<string>();
  readonly runtime: Runtime;
  readonly file: string;
  readonly state: StateStore | null;
  readonly audit: AuditTrail;
  readonly #log: Logger;
  #fileText: string;
  #ops: PolicyOp[];
  #drift: Drift[];
  #queue: Promise<unknown> = Promise.resolve();

  /**
   * @param runtime - the running runtime (started with prepared.loaded)
   * @param prepared - from prepareConfig()
   * @param stateFile - where to persist, or null
   * @param auditFile - audit trail file, or null for memory only
   */
  constructor(
    runtime: Runtime,
    prepared: PreparedConfig,
    stateFile: string | null,
    auditFile: string | null,
    log: Logger,
  ) {
    this.runtime = runtime;
    this.file = prepared.loaded.file;
    this.#log = log;
    this.#fileText = prepared.fileText;
    this.#ops = prepared.ops;
    this.#drift = prepared.drift;
    this.state = stateFile ? new StateStore(stateFile, log) : null;
    this.audit = new AuditTrail(auditFile, log);
    this.#restore(prepared.state);
    if (prepared.drift.length > 0) {
      const snap = runtime.snapshot;
      this.audit.append({
        actor: 'startup',
        action: 'drift',
        change: prepared.drift,
        oldVersion: snap.version,
        newVersion: snap.version,
        oldHash: snap.hash,
        newHash: snap.hash,
      });
      this.#persist();
    }
  }

  /** Runtime operations in force (on top of the file). */
  get ops(): readonly PolicyOp[] {
    return this.#ops;
  }

  /** Operations dropped because they no longer apply to the file. */
  get drift(): readonly Drift[] {
    return this.#drift;
  }

  /** The configuration text in force: the file with the runtime operations applied. */
  effectiveText(): string {
    return applyPolicyOps(this.#fileText, this.#ops);
  }

  /**
   * Applies policy operations atomically: all or nothing.
   * @param actor - who (`token:NAME`)
   * @returns the new snapshot
   * @throws AdminError SEGLB_ADMIN_INVALID_CHANGE (422, with positioned issues), SEGLB_ADMIN_BAD_REQUEST,
   *   SEGLB_ADMIN_NOT_FOUND, SEGLB_ADMIN_CONFLICT; nothing is applied then
   */
  change(actor: string, ops: readonly PolicyOp[]): Promise<Snapshot> {
    return this.#serial(async () => {
      const text = applyPolicyOps(this.effectiveText(), ops);
      const loaded = validate(text, this.file);
      const snap = await this.#swap(loaded);
      this.#ops = compactOps([...this.#ops, ...ops]);
      const id = `${process.pid}-${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
      this.#appliedIds.add(id);
      this.#persist();
      this.replicator?.opsApplied(id, ops, actor);
      return this.#audited(
        actor,
        ops.length === 1 ? (ops[0] as PolicyOp).op : 'policy_ops',
        ops,
        snap.old,
        snap.next,
      );
    });
  }

  /**
   * Re-reads the config file and applies it with the runtime operations on top (operations that no
   * longer apply become drift).
   * @throws ConfigError when the file is invalid (the running config stays)
   */
  reloadFile(actor: string): Promise<Snapshot> {
    return this.#serial(async () => {
      const fileText = readConfigText(this.file);
      const fileLoaded = loadConfigText(fileText, this.file);
      const replay = replayOps(fileText, this.file, this.#ops, fileLoaded);
      const snap = await this.#swap(replay.loaded);
      this.#fileText = fileText;
      this.#ops = replay.ops;
      this.#drift = [...this.#drift, ...replay.drift];
      for (const d of replay.drift)
        this.#log.warn(
          { op: d.op, error: d.error },
          'runtime change no longer applies to the config file (drift)',
        );
      this.#persist();
      return this.#audited(actor, 'reload', { drift: replay.drift }, snap.old, snap.next);
    });
  }

  /**
   * Quarantines a source everywhere (open connections from it are closed).
   * @returns the entry and the number of connections closed
   */
  quarantineAdd(actor: string, cidr: string, ttlMs: number, reason: string) {
    const snap = this.runtime.snapshot;
    const result = this.runtime.quarantineAdd(cidr, ttlMs, reason);
    this.#persist();
    this.replicator?.quarantineAdded(result.entry);
    this.audit.append({
      actor,
      action: 'quarantine_add',
      change: { ...result.entry, expiresAt: finite(result.entry.expiresAt) },
      oldVersion: snap.version,
      newVersion: snap.version,
      oldHash: snap.hash,
      newHash: snap.hash,
    });
    return result;
  }

  /** @returns true when an entry was removed */
  quarantineRemove(actor: string, cidr: string): boolean {
    const snap = this.runtime.snapshot;
    const removed = this.runtime.quarantineRemove(cidr);
    if (removed) {
      this.#persist();
      this.replicator?.quarantineRemoved(cidr);
      this.audit.append({
        actor,
        action: 'quarantine_remove',
        change: { cidr },
        oldVersion: snap.version,
        newVersion: snap.version,
        oldHash: snap.hash,
        newHash: snap.hash,
      });
    }
    return removed;
  }

  /**
   * Sets a backend to ready, drain or maintenance.
   * @throws AdminError SEGLB_ADMIN_NOT_FOUND for an unknown pool or backend
   */
  setBackendState(actor: string, pool: string, backend: string, state: BackendAdminState): void {
    const snap = this.runtime.snapshot;
    if (!this.runtime.setBackendState(pool, backend, state)) {
      throw new AdminError('SEGLB_ADMIN_NOT_FOUND', `pool ${pool} has no backend ${backend}`, 404);
    }
    this.#persist();
    this.audit.append({
      actor,
      action: 'backend_state',
      change: { pool, backend, state },
      oldVersion: snap.version,
      newVersion: snap.version,
      oldHash: snap.hash,
      newHash: snap.hash,
    });
  }

  /**
   * Applies quarantine changes received from a cluster peer (one rebuild; open connections from
   * newly quarantined sources closed), persists and audits them. Not replicated back.
   */
  applyReplicatedQuarantine(
    upserted: readonly { cidr: string; expiresAt: number; reason: string; addedAt?: number }[],
    removed: readonly string[],
    actor = 'cluster',
  ): void {
    const snap = this.runtime.snapshot;
    const closed = this.runtime.quarantineApply(upserted, removed);
    this.#persist();
    this.audit.append({
      actor,
      action: 'quarantine_replicated',
      change: {
        upserted: upserted.length,
        removed: removed.length,
        connectionsClosed: closed,
        sample: upserted.slice(0, 5).map((u) => u.cidr),
      },
      oldVersion: snap.version,
      newVersion: snap.version,
      oldHash: snap.hash,
      newHash: snap.hash,
    });
  }

  /**
   * Applies policy operation batches received from a cluster peer, in order, skipping batches
   * already applied here. A batch that does not apply to this node's file becomes drift.
   */
  applyReplicatedOps(
    batches: readonly { id: string; ops: readonly PolicyOp[]; actor: string }[],
  ): Promise<void> {
    return this.#serial(async () => {
      for (const b of batches) {
        if (this.#appliedIds.has(b.id)) continue;
        this.#appliedIds.add(b.id);
        try {
          const loaded = validate(applyPolicyOps(this.effectiveText(), b.ops), this.file);
          const snap = await this.#swap(loaded);
          this.#ops = compactOps([...this.#ops, ...b.ops]);
          this.#persist();
          this.#audited(`cluster:${b.actor}`, 'policy_ops_replicated', b.ops, snap.old, snap.next);
        } catch (err) {
          const error = err instanceof SeglbError ? err.message : String(err);
          for (const op of b.ops) this.#drift = [...this.#drift, { op, error }];
          this.#log.warn({ id: b.id, error }, 'replicated policy change does not apply here (drift)');
          this.#persist();
        }
      }
    });
  }

  async #swap(loaded: LoadedConfig): Promise<{ old: Snapshot; next: Snapshot }> {
    const old = this.runtime.snapshot;
    const next = await this.runtime.reload(loaded);
    this.replicator?.snapshotChanged(next);
    return { old, next };
  }

  #audited(actor: string, action: string, change: unknown, old: Snapshot, next: Snapshot): Snapshot {
    this.audit.append({
      actor,
      action,
      change,
      oldVersion: old.version,
      newVersion: next.version,
      oldHash: old.hash,
      newHash: next.hash,
    });
    return next;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  #persist(): void {
    this.state?.save({
      version: 1,
      policy_ops: this.#ops,
      quarantine: this.runtime.quarantine
        .list()
        .map((e) => ({ cidr: e.cidr, expiresAt: finite(e.expiresAt), reason: e.reason })),
      backend_states: this.runtime.backendStates(),
      applied_ids: [...this.#appliedIds].slice(-10_000),
    });
  }

  #restore(state: RuntimeState): void {
    for (const id of state.applied_ids ?? []) this.#appliedIds.add(id);
    const now = Date.now();
    for (const q of state.quarantine) {
      // The file may have been edited by hand: skip anything that is not a well-formed entry.
      if (!q || typeof q !== 'object' || typeof q.cidr !== 'string') {
        this.#log.warn({ entry: q }, 'saved quarantine entry skipped: not {cidr, expiresAt, reason}');
        continue;
      }
      const ttl = typeof q.expiresAt === 'number' ? q.expiresAt - now : Number.POSITIVE_INFINITY;
      if (ttl > 0) {
        try {
          this.runtime.quarantine.add(
            q.cidr,
            ttl,
            typeof q.reason === 'string' ? q.reason : 'restored from state file',
          );
        } catch (err) {
          this.#log.warn({ cidr: q.cidr, err: String(err) }, 'saved quarantine entry skipped');
        }
      }
    }
    for (const entry of state.backend_states) {
      // The file may have been edited by hand: take only well-formed [pool, address, state] entries.
      const [pool, address, s] = Array.isArray(entry) ? entry : [];
      const valid =
        typeof pool === 'string' &&
        typeof address === 'string' &&
        (s === 'ready' || s === 'drain' || s === 'maintenance');
      if (!valid || !this.runtime.setBackendState(pool, address, s))
        this.#log.warn({ entry }, 'saved backend state skipped: malformed or no such backend');
    }
  }
}

function finite(n: number): number | null {
  return Number.isFinite(n) ? n : null;
}

/** Validates config text; ConfigError becomes AdminError 422 with the positioned issues. */
function validate(text: string, file: string): LoadedConfig {
  try {
    return loadConfigText(text, file);
  } catch (err) {
    if (err instanceof ConfigError) {
      const issues: readonly ConfigIssue[] = err.issues;
      throw new AdminError(
        'SEGLB_ADMIN_INVALID_CHANGE',
        `the change would make the configuration invalid (${issues.length} problem${issues.length === 1 ? '' : 's'}, listed in "issues"); nothing was applied`,
        422,
        { issues, cause: err },
      );
    }
    throw err;
  }
}
