// Public surface of src/policy: compiled segment policies, L7 matching, quarantine, source sets,
// the radix table and explain.
export {
  type CompiledRule,
  type ConnectionVerdict,
  compileSegmentPolicy,
  DEFAULT_DENY_RULE,
  type RequestVerdict,
  SegmentPolicy,
  VERDICT_ALLOW,
  VERDICT_DENY,
  VERDICT_L7,
  type VerdictRecord,
} from './compile.ts';
export { type ExplainedRule, type ExplainRequest, type Explanation, explainVerdict } from './explain.ts';
export { L7Matcher, normaliseRequestPath, type RequestAttributes, requestHostName } from './l7.ts';
export { Quarantine, type QuarantineEntry } from './quarantine.ts';
export { RadixBuilder, type RadixBuildOptions, RadixTable } from './radix.ts';
export { EMPTY_SOURCE_SET, expandSources, SourceSet, unmapCidr } from './source-set.ts';
