/**
 * The API's routes as OpenAPI route definitions: what each takes and answers. The handlers are
 * in `app.ts`; the OpenAPI document is generated from these, so it lists exactly what is served.
 *
 * @module
 */

import { createRoute, z } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import {
  ErrorSchema,
  FilesSchema,
  HealthSchema,
  ModulesSchema,
  ProcessAnswerSchema,
  ProcessesSchema,
  RefreshSchema,
  SocketsSchema,
  VmListSchema,
  VmStatsSchema,
  VmStatusSchema,
} from "./schemas.ts";
import {
  FreshnessQuery,
  ProcessesQuery,
  ProcessParams,
  SocketsQuery,
  VmParams,
} from "./parameters.ts";

/** Name of the bearer security scheme in the OpenAPI document. */
export const BEARER = "bearer";

/** Content type of the Prometheus text exposition format. */
export const PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const ERRORS = {
  401: "Missing or wrong bearer token (unauthorized)",
  404: "No such guest (unknown_vm) or process (unknown_pid)",
  422: "A path or query parameter is invalid (bad_parameter), named in `error.name`",
  500: "Unexpected failure (internal)",
  503: "The agent cannot be reached and no acceptable snapshot is at hand (agent_unreachable)",
} as const;

interface ErrorResponse {
  description: string;
  content: { "application/json": { schema: typeof ErrorSchema } };
}

/** The error responses of `statuses`, as {@linkcode ERRORS} or `saying` describes them. */
export function errorsOf<S extends keyof typeof ERRORS>(
  statuses: readonly S[],
  saying: Partial<Record<S, string>> = {},
): Record<S, ErrorResponse> {
  const responses = {} as Record<S, ErrorResponse>;
  for (const status of statuses) {
    responses[status] = {
      description: saying[status] ?? ERRORS[status],
      content: { "application/json": { schema: ErrorSchema } },
    };
  }
  return responses;
}

function errors<S extends keyof typeof ERRORS>(...statuses: S[]): Record<S, ErrorResponse> {
  return errorsOf(statuses);
}

function json<T extends z.ZodType>(description: string, schema: T) {
  return { description, content: { "application/json": { schema } } };
}

/** The security of a route behind the bearer token. */
export const secured = [{ [BEARER]: [] }];

const snapshotAge = z.object({
  "X-Snapshot-Age-Ms": z.string().openapi({
    description: "Age of the snapshot in milliseconds when the response was made",
  }),
});

export const health = createRoute({
  method: "get",
  path: "/healthz",
  summary: "Liveness of the IDS API",
  responses: { 200: json("The API is serving", HealthSchema) },
});

/** The metrics route, behind `auth` when given. */
export function metrics(auth?: MiddlewareHandler) {
  return createRoute({
    method: "get",
    path: "/metrics",
    summary: "Prometheus metrics of the monitor",
    middleware: auth ? [auth] : [],
    security: auth ? secured : [],
    responses: {
      200: {
        description: "Prometheus text exposition format 0.0.4",
        content: { [PROMETHEUS_CONTENT_TYPE]: { schema: z.string() } },
      },
      ...(auth ? errors(401, 500) : errors(500)),
    },
  });
}

export const openApi = createRoute({
  method: "get",
  path: "/openapi.json",
  summary: "This OpenAPI 3.1 document",
  responses: {
    200: json("The OpenAPI document", z.record(z.string(), z.unknown())),
  },
});

export const listVms = createRoute({
  method: "get",
  path: "/v1/vms",
  summary: "Every configured guest, in configuration order",
  security: secured,
  responses: { 200: json("The guests' status", VmListSchema), ...errors(401, 500) },
});

export const getVm = createRoute({
  method: "get",
  path: "/v1/vms/{vm}",
  summary: "One guest's status",
  security: secured,
  request: { params: VmParams },
  responses: { 200: json("The guest's status", VmStatusSchema), ...errors(401, 404, 500) },
});

/**
 * A route that serves a snapshot of a guest's view: the snapshot's age in a header, and every
 * error a fetch of it can end in.
 */
function snapshotRoute<
  P extends string,
  V extends typeof VmParams | typeof ProcessParams,
  Q extends z.ZodObject,
  S extends z.ZodType,
>(
  route: {
    path: P;
    summary: string;
    description?: string;
    params: V;
    query: Q;
    answer: string;
    schema: S;
  },
) {
  return createRoute({
    method: "get",
    path: route.path,
    summary: route.summary,
    description: route.description,
    security: secured,
    request: { params: route.params, query: route.query },
    responses: {
      200: { ...json(route.answer, route.schema), headers: snapshotAge },
      ...errors(401, 404, 422, 500, 503),
    },
  });
}

/** "Served again within `max_age_ms`", said of each view taken on request. */
const KEPT = "A request within `max_age_ms` (default: the guest's refresh interval) is served " +
  "the same snapshot.";

export const listProcesses = snapshotRoute({
  path: "/v1/vms/{vm}/processes",
  summary: "The guest's process list, filtered, from the cache when fresh enough",
  params: VmParams,
  query: ProcessesQuery,
  answer: "The processes that pass every filter",
  schema: ProcessesSchema,
});

export const getProcess = snapshotRoute({
  path: "/v1/vms/{vm}/processes/{pid}",
  summary: "One process of the guest",
  params: ProcessParams,
  query: FreshnessQuery,
  answer: "The process",
  schema: ProcessAnswerSchema,
});

export const listFiles = snapshotRoute({
  path: "/v1/vms/{vm}/processes/{pid}/files",
  summary: "The open files of one process of the guest, taken on request",
  description: `Kept per process. ${KEPT}`,
  params: ProcessParams,
  query: FreshnessQuery,
  answer: "The process's open files",
  schema: FilesSchema,
});

export const listModules = snapshotRoute({
  path: "/v1/vms/{vm}/modules",
  summary: "The guest's loaded kernel modules, taken on request",
  description: `${KEPT} A kernel without loadable modules answers \`supported: false\` with ` +
    "the reason.",
  params: VmParams,
  query: FreshnessQuery,
  answer: "The modules, or why there can be none",
  schema: ModulesSchema,
});

export const listSockets = snapshotRoute({
  path: "/v1/vms/{vm}/sockets",
  summary: "The guest's TCP and UDP sockets with their owners, filtered, taken on request",
  description: KEPT,
  params: VmParams,
  query: SocketsQuery,
  answer: "The sockets that pass every filter",
  schema: SocketsSchema,
});

export const refresh = createRoute({
  method: "post",
  path: "/v1/vms/{vm}/refresh",
  summary: "Refresh the guest's process list now (prefetch mode)",
  security: secured,
  request: { params: VmParams },
  responses: {
    200: json("The new snapshot", RefreshSchema),
    ...errors(401, 404, 500, 503),
  },
});

export const stats = createRoute({
  method: "get",
  path: "/v1/vms/{vm}/stats",
  summary: "Cumulative costs of monitoring the guest, with recent latency percentiles",
  security: secured,
  request: { params: VmParams },
  responses: { 200: json("The guest's costs", VmStatsSchema), ...errors(401, 404, 500) },
});
