/**
 * Alerts: the lifecycle of findings, kept in SQLite in the service's state directory so that
 * they survive restarts, and delivered to webhooks, live subscribers (the API's SSE stream) and
 * the metrics.
 *
 * ```ts
 * import { AlertService } from "./mod.ts";
 *
 * await using alerts = AlertService.open(`${stateDir}/alerts.db`, { resolveAfter: 3, webhooks });
 * const changes = alerts.apply("web-1", findings, scan.takenAt);
 * ```
 *
 * @module
 */

export { LIMITS } from "./_bounds.ts";
export { type AlertListener, AlertService, type AlertServiceOptions } from "./service.ts";
export {
  AlertStore,
  HEALTH_RULES,
  MAX_LIST,
  MISBEHAVING_RULE,
  OVERFLOW_RULE,
  OVERFLOW_SUBJECT,
  UNREACHABLE_RULE,
} from "./store.ts";
export { SCHEMA_VERSION } from "./_schema.ts";
export * from "./types.ts";
export { type WebhookConfig, type WebhookOptions, Webhooks } from "./webhooks.ts";
