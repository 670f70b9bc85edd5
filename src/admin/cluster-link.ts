// Wires a ClusterNode to the policy controller: local quarantine and policy changes are written to
// the replicated state; changes from peers are applied here without being written back (no echo);
// the policy hash is announced after every swap so divergent nodes are reported. Backend health and
// source stickiness are shared with the pools by ClusterPoolSync, started here.

import { type ClusterNode, clusterNodeOptions } from '../cluster/index.ts';
import type { SeglbConfig } from '../config/index.ts';
import type { Logger } from '../observe/log.ts';
import type { QuarantineEntry } from '../policy/index.ts';
import type { Snapshot } from '../runtime.ts';
import { ClusterPoolSync } from './cluster-pool-sync.ts';
import type { PolicyControl, PolicyReplicator } from './control.ts';
import type { PolicyOp } from './ops.ts';

/** What a replicated policy batch holds (the value of one cluster `policy` entry). */
interface ReplicatedBatch {
  readonly ops: readonly PolicyOp[];
  readonly actor: string;
}

/**
 * Connects a started ClusterNode to a PolicyControl. Create with `ClusterLink.start()`.
 * Quarantine: the admin API (and detectors) change the local runtime through PolicyControl, which
 * tells this link; the link writes the entry to the cluster. Entries from peers arrive as 'remote'
 * change sets and are applied in one batch (catch-up of 100k entries = one rebuild).
 */
export class ClusterLink implements PolicyReplicator {
  readonly node: ClusterNode;
  readonly #control: PolicyControl;
  readonly #log: Logger;
  readonly #pools: ClusterPoolSync;

  private constructor(node: ClusterNode, control: PolicyControl, log: Logger) {
    this.node = node;
    this.#control = control;
    this.#log = log;
    this.#pools = new ClusterPoolSync(node, control.runtime.pools, log);
  }

  /**
   * Starts the cluster node for `cluster:` and links it.
   * @param cluster - the validated `cluster:` section
   * @param configDir - folder of the config file (relative key paths)
   * @throws ClusterError SEGLB_CLUSTER_KEY / SEGLB_CLUSTER_BIND
   */
  static async start(
    cluster: NonNullable<SeglbConfig['cluster']>,
    configDir: string,
    control: PolicyControl,
    log: Logger,
  ): Promise<ClusterLink> {
    const { ClusterNode } = await import('../cluster/index.ts');
    const clusterLog = log.child({ component: 'cluster' });
    const node = await ClusterNode.start(
      clusterNodeOptions(cluster as never, {
        configDir,
        log: clusterLog,
        policyVersion: control.runtime.snapshot.hash,
      }),
    );
    const link = new ClusterLink(node, control, clusterLog);
    link.#attach();
    return link;
  }

  #attach(): void {
    const control = this.#control;
    // Seed the cluster with what this node already holds (restored from its state file).
    for (const e of control.runtime.quarantine.list()) this.quarantineAdded(e);
    this.node.on('quarantine', (set) => {
      if (set.origin === 'local') return;
      control.applyReplicatedQuarantine(
        set.upserted.map((e) => ({
          cidr: e.cidr,
          expiresAt: e.expiresAt,
          reason: e.reason,
          addedAt: e.addedAt,
        })),
        set.removed,
      );
    });
    this.node.on('policy', (set) => {
      if (set.origin === 'local') return;
      const batches = set.upserted
        .map((p) => ({ id: p.id, value: p.op as ReplicatedBatch | null }))
        .filter((b): b is { id: string; value: ReplicatedBatch } => Array.isArray(b.value?.ops))
        .map((b) => ({ id: b.id, ops: b.value.ops, actor: b.value.actor }));
      if (batches.length > 0) {
        control
          .applyReplicatedOps(batches)
          .catch((err: unknown) => this.#log.error({ err: String(err) }, 'replicated policy change failed'));
      }
    });
    // Peer state changes and policy divergence are logged by the node itself (src/cluster/node.ts:
    // 'cluster peer is alive' ..., 'cluster nodes run different policy versions' only when they do).
    control.replicator = this;
    control.clusterStatus = () => this.node.status();
    // Sync lag is estimated as the time since the peer was last heard (heartbeats keep it small).
    control.runtime.observer.clusterPeers = () =>
      this.node.status().peers.map((p) => ({
        name: p.nodeId ?? p.address ?? 'unknown',
        address: p.listen ?? p.address ?? '',
        state: p.state,
        syncLagMs: p.lastSeenMsAgo,
      }));
    // Apply what peers already hold (a node that restarts or joins late catches up).
    const held = this.node.quarantine.list();
    if (held.length > 0) {
      control.applyReplicatedQuarantine(
        held.map((e) => ({ cidr: e.cidr, expiresAt: e.expiresAt, reason: e.reason, addedAt: e.addedAt })),
        [],
      );
    }
    const policy = this.node.policy.list();
    if (policy.length > 0) {
      const batches = policy
        .filter((p) => Array.isArray((p.op as ReplicatedBatch | null)?.ops))
        .map((p) => ({
          id: p.id,
          ops: (p.op as ReplicatedBatch).ops,
          actor: (p.op as ReplicatedBatch).actor,
        }));
      void control.applyReplicatedOps(batches);
    }
    // Backend health both ways and source stickiness (reports, imports, majority views).
    this.#pools.attach();
  }

  quarantineAdded(entry: QuarantineEntry): void {
    try {
      const expiresAt = Number.isFinite(entry.expiresAt) ? entry.expiresAt : undefined;
      this.node.quarantine.put({
        cidr: entry.cidr,
        reason: entry.reason,
        ...(expiresAt !== undefined ? { expiresAt } : {}),
      });
    } catch (err) {
      this.#log.error({ cidr: entry.cidr, err: String(err) }, 'quarantine entry not replicated');
    }
  }

  quarantineRemoved(cidr: string): void {
    try {
      this.node.quarantine.remove(cidr);
    } catch (err) {
      this.#log.error({ cidr, err: String(err) }, 'quarantine removal not replicated');
    }
  }

  opsApplied(id: string, ops: readonly PolicyOp[], actor: string): void {
    try {
      this.node.policy.put(id, { ops, actor } satisfies ReplicatedBatch);
    } catch (err) {
      this.#log.error({ id, err: String(err) }, 'policy change not replicated');
    }
  }

  snapshotChanged(snap: Snapshot): void {
    this.node.setPolicyVersion(snap.hash);
    this.#pools.snapshotChanged();
  }

  /** Stops the node (announcing it leaves). */
  stop(): Promise<void> {
    this.#pools.detach();
    return this.node.stop();
  }
}
