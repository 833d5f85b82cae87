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
  type ScanContext,
  type Section,
  type SectionName,
  sectionOf,
  SEVERITIES,
  type Severity,
  severityRank,
  type Source,
} from "./types.ts";
export { ftraceHook } from "./ftrace_hook.ts";
export { hiddenModule } from "./hidden_module.ts";
export { hookedPointer } from "./hooked_pointer.ts";
export { sharedNodes } from "./sources.ts";
