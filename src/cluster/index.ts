// Public surface of src/cluster: the cluster node (sync listener, peers, replicated state), its
// options, status and events, the state views, and the `cluster:` config checks and mapping.
export {
  type ClusterConfigProblem,
  checkClusterConfig,
  clusterNodeId,
  clusterNodeOptions,
} from './config.ts';
export type { Stamp } from './hlc.ts';
export type { BackendState } from './keyspaces.ts';
export {
  type ChangeSet,
  CLUSTER_DEFAULTS,
  type ClusterCounters,
  type ClusterEvents,
  type ClusterLog,
  ClusterNode,
  type ClusterNodeOptions,
  type ClusterStatus,
  type PeerEvent,
  type PeerState,
  type PeerStatus,
  type PolicyDivergence,
} from './node.ts';
export type {
  HealthReport,
  HealthState,
  HealthView,
  PolicyOp,
  PolicyView,
  QuarantineView,
  StickyEntry,
  StickyTable,
} from './state-views.ts';
