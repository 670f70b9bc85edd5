// Public surface of src/observe: logging, observed sources, flow records, metrics, detectors, events.
export { type SourceGroupCounts, SourceGroups } from './aggregates.ts';
export { CounterFold } from './counter-fold.ts';
export { AnomalyDetectors, DETECTOR_NAMES, type Detection, type DetectorName } from './detectors.ts';
export { type AlertEvent, EventHub, type EventSubscriber } from './events.ts';
export { Ewma } from './ewma.ts';
export { FlowLog, type FlowLogOptions } from './flow-log.ts';
export {
  FLOW_ALLOW,
  FLOW_AUDIT,
  FLOW_CONN,
  FLOW_DENY,
  FLOW_REQ,
  FLOW_VERDICT_NAMES,
  type FlowQuery,
  type FlowRecord,
  FlowRing,
  type FlowVerdict,
  type FlowVerdictName,
} from './flow-ring.ts';
export { LATENCY_BUCKETS_SECONDS, LatencyHistogram } from './histogram.ts';
export { createLogger, type Logger, LogRateLimiter } from './log.ts';
export { buildMetricsRegistry } from './metrics.ts';
export {
  type ClusterPeerView,
  flowChannel,
  type ObservedRuntime,
  Observer,
  type QuarantineHandler,
  RULE_QUARANTINE,
  RULE_TRUSTED_PROXY,
} from './observer.ts';
export { type ObservedSource, ObservedSources } from './sources.ts';
