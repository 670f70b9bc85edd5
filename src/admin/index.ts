// Public surface of src/admin: the admin API server, the policy controller and runtime operations.

export { ClusterLink } from './cluster-link.ts';
export type { PolicyReplicator } from './control.ts';
export { type Drift, PolicyControl, type PreparedConfig, prepareConfig } from './control.ts';
export { type LintFinding, lintConfig, type SegmentImpact, simulateImpact } from './impact.ts';
export { STREAM_TICKET_MS, wireObserve } from './observe-routes.ts';
export { applyPolicyOps, POLICY_OPS, type PolicyOp, parsePolicyOp } from './ops.ts';
export { ADMIN_MAX_BODY_BYTES, type AdminExtension, AdminServer } from './server.ts';
export { type AuditEntry, AuditTrail, type RuntimeState, StateStore } from './state.ts';
