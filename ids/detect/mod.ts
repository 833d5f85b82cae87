/**
 * Detection: cross-view sources over guest memory, one pure rule per file, and the check that
 * runs them with one prefetch round trip.
 *
 * @module
 */

export {
  type CheckOptions,
  type CheckResult,
  type CheckStats,
  enabledRules,
  type RuleConfig,
  type RulesConfig,
  runCheck,
  scanSections,
} from "./check.ts";
export { DETECTORS, SOURCES } from "./registry.ts";
export {
  type Detector,
  type Finding,
  type RuleSettings,
  type Scan,
  type Section,
  sectionOf,
  SEVERITIES,
  type Severity,
  severityRank,
} from "./types.ts";
