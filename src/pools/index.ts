// Public surface of src/pools: pools, backends, algorithms, the outbound check and demo backends.
export type { LbAlgorithmName, PoolMember } from './algorithm.ts';
export { getAlgorithm, LB_ALGORITHMS } from './algorithms.ts';
export { startDemoBackend } from './demo-backend.ts';
export { createCheckedConnector, type OutboundObserver, resolveAllowedAddress } from './outbound.ts';
export { type Backend, type BackendAdminState, BackendPool, type PoolOptions } from './pool.ts';
