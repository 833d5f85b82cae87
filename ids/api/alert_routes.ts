/**
 * The alert routes: their schemas and OpenAPI route definitions. The handlers are in
 * `alerts.ts`.
 *
 * @module
 */

import { createRoute, z } from "@hono/zod-openapi";
import {
  type Alert,
  ALERT_STATES,
  type AlertChange,
  CHANGE_KINDS,
  HEALTH_RULES,
  MAX_LIST,
  OVERFLOW_RULE,
} from "../alerts/mod.ts";
import { SEVERITIES } from "../detect/mod.ts";
import { RULE_NAMES } from "../service/mod.ts";
import { VmParams } from "./parameters.ts";
import { errorsOf, secured } from "./routes.ts";

const severity = z.enum(SEVERITIES);

/** One alert: the lifecycle of one finding, from the scan that found it to its resolution. */
export const AlertSchema = z.object({
  id: z.number().int(),
  vm: z.string(),
  rule: z.string(),
  subject: z.string().openapi({ description: "What it is about: `pid 1234`, `module rk`..." }),
  state: z.enum(ALERT_STATES),
  severity,
  message: z.string(),
  evidence: z.record(z.string(), z.unknown()).openapi({
    description: "What the rule saw (addresses, views, raw values), as data",
  }),
  firstSeen: z.number().int().openapi({ description: "Epoch ms of the first scan that found it" }),
  lastSeen: z.number().int().openapi({ description: "Epoch ms of the last scan that found it" }),
  count: z.number().int().openapi({ description: "Scans that found it" }),
  missing: z.number().int().openapi({ description: "Consecutive scans without it so far" }),
  resolvedAt: z.number().int().optional().openapi({ description: "Epoch ms of its resolution" }),
  previousId: z.number().int().optional().openapi({
    description: "The resolved alert of the same finding that this one reopens",
  }),
}).openapi("Alert");

/** One event of the alert log, as the stream and the webhooks send it. */
export const AlertChangeSchema = z.object({
  id: z.number().int().openapi({ description: "Event id: increasing, never reused" }),
  kind: z.enum(CHANGE_KINDS),
  at: z.number().int(),
  alert: AlertSchema,
  previousSeverity: severity.optional(),
}).openapi("AlertChange");

/** The body of the alert lists. */
export const AlertsSchema = z.object({ alerts: z.array(AlertSchema) }).openapi("Alerts");

/** The rules an alert can be of: the detection rules, the agent's health, the overflow. */
const RULE_FILTER = [...RULE_NAMES, ...HEALTH_RULES, OVERFLOW_RULE] as [string, ...string[]];
const SINCE = "expected epoch milliseconds or an ISO 8601 date";
const LIMIT = `expected an integer from 1 to ${MAX_LIST}`;
const EVENT_ID = "expected a non-negative integer event id";

function queryParameter(name: string, description: string) {
  return { param: { name, in: "query" as const, description } };
}

/** An epoch-ms integer or an ISO 8601 date, as epoch ms. */
const since = z.string({ error: SINCE })
  .transform((value, ctx) => {
    const at = /^\d{1,15}$/.test(value)
      ? Number(value)
      : /^\d{4}-\d{2}-\d{2}/.test(value)
      ? Date.parse(value)
      : NaN;
    if (Number.isNaN(at)) {
      ctx.addIssue({ code: "custom", message: SINCE });
      return z.NEVER;
    }
    return at;
  })
  .optional()
  .openapi({
    ...queryParameter("since", "Only alerts last seen at or after this time: " + SINCE),
    example: "2026-12-01T08:00:00Z",
  });

const filters = {
  rule: z.enum(RULE_FILTER, { error: `expected one of ${RULE_FILTER.join(", ")}` }).optional()
    .openapi(queryParameter("rule", "Only alerts of this rule")),
  severity: z.enum(SEVERITIES, { error: `expected one of ${SEVERITIES.join(", ")}` }).optional()
    .openapi(queryParameter("severity", "Only alerts of at least this severity")),
  state: z.enum(ALERT_STATES, { error: 'expected "open" or "resolved"' }).optional()
    .openapi(queryParameter("state", "Only alerts in this state")),
  since,
  limit: z.string({ error: LIMIT })
    .regex(/^\d{1,4}$/, { error: LIMIT })
    .transform(Number)
    .refine((n) => n >= 1 && n <= MAX_LIST, { error: LIMIT })
    .optional()
    .openapi({
      ...queryParameter("limit", "At most this many, the most recently seen first (default 100)"),
      type: "integer",
      minimum: 1,
      maximum: MAX_LIST,
    }),
};

/** Query of `/v1/vms/{vm}/alerts`. */
export const VmAlertsQuery = z.object(filters);

/** Query of `/v1/alerts`: the filters, and the guest. */
export const AlertsQuery = z.object({
  vm: z.string({ error: "expected a guest name" })
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, { error: "expected a guest name" })
    .optional()
    .openapi(
      queryParameter("vm", "Only alerts of this guest (configured now or in the past)"),
    ),
  ...filters,
});

const eventId = z.string({ error: EVENT_ID })
  .regex(/^\d{1,15}$/, { error: EVENT_ID })
  .transform(Number)
  .optional();

/** Query of `/v1/alerts/stream`. */
export const AlertStreamQuery = z.object({
  last_event_id: eventId.openapi({
    ...queryParameter("last_event_id", "Resume after this event id (as Last-Event-ID)"),
    type: "integer",
    minimum: 0,
  }),
});

/** Headers of `/v1/alerts/stream`. */
export const AlertStreamHeaders = z.object({
  "last-event-id": eventId.openapi({
    param: {
      name: "last-event-id",
      in: "header",
      description: "Resume after this event id; a browser's EventSource sends it on reconnect",
    },
    type: "integer",
    minimum: 0,
  }),
});

/** What the alert routes' errors are about. */
const ABOUT = {
  404: "No such guest (unknown_vm)",
  422: "A query parameter or header is invalid (bad_parameter), named in `error.name`",
};

function errors(statuses: (401 | 404 | 422 | 500)[]) {
  return errorsOf(statuses, ABOUT);
}

export const listAlerts = createRoute({
  method: "get",
  path: "/v1/alerts",
  summary: "Stored alerts of every guest, filtered, the most recently seen first",
  security: secured,
  request: { query: AlertsQuery },
  responses: {
    200: { description: "The alerts", content: { "application/json": { schema: AlertsSchema } } },
    ...errors([401, 422, 500]),
  },
});

export const listVmAlerts = createRoute({
  method: "get",
  path: "/v1/vms/{vm}/alerts",
  summary: "Stored alerts of one guest, filtered, the most recently seen first",
  security: secured,
  request: { params: VmParams, query: VmAlertsQuery },
  responses: {
    200: { description: "The alerts", content: { "application/json": { schema: AlertsSchema } } },
    ...errors([401, 404, 422, 500]),
  },
});

export const alertStream = createRoute({
  method: "get",
  path: "/v1/alerts/stream",
  summary: "Alert changes as Server-Sent Events: the stored ones after Last-Event-ID, then live",
  description: "Each event is `event: alert`, `id: <event id>`, `data: <AlertChange JSON>`; " +
    "comments (`: heartbeat`) keep the connection alive. Without Last-Event-ID (or " +
    "`last_event_id`) the stream starts with the next change. A client that falls too far " +
    "behind is disconnected; reconnecting with Last-Event-ID resumes without a gap, within the " +
    "events the retention keeps.",
  security: secured,
  request: { query: AlertStreamQuery, headers: AlertStreamHeaders },
  responses: {
    200: {
      description: "An endless text/event-stream",
      content: { "text/event-stream": { schema: z.string() } },
    },
    ...errors([401, 422, 500]),
  },
});

type Same<A, B> = [A, keyof A] extends [B, keyof B] ? [B, keyof B] extends [A, keyof A] ? true
  : false
  : false;
const _inSync: [
  Same<z.infer<typeof AlertSchema>, Alert>,
  Same<z.infer<typeof AlertChangeSchema>, AlertChange>,
] = [true, true];
