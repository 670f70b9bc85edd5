// Public surface of src/pools: pools, backends, algorithms, shared pool state, health checks,
// stickiness, the outbound check and demo backends.
export type { LbAlgorithmName, PoolMember } from './algorithm.ts';
export { getAlgorithm, LB_ALGORITHMS } from './algorithms.ts';
export type { BackendAdminState, BackendState, CheckRecord, HealthVerdict } from './backend-state.ts';
export { type BackendTlsOptions, backendTlsOptions } from './backend-tls.ts';
export { startDemoBackend } from './demo-backend.ts';
export { createCheckedConnector, type OutboundObserver, resolveAllowedAddress } from './outbound.ts';
export {
  type AssignHandler,
  BACKEND_FULL,
  Backend,
  BackendPool,
  type BackendStatus,
  type PickRequest,
  type PoolOptions,
  type PoolStatus,
  type QueueTicket,
} from './pool.ts';
export { PoolStateRegistry } from './pool-registry.ts';
export type { PoolCounters, PoolState, PoolStateListener } from './pool-state.ts';
export { SourceStickyTable, type StickyEntry } from './sticky-table.ts';
