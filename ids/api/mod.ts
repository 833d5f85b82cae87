/**
 * The IDS REST API over the monitor service, built with Hono and described by an OpenAPI 3.1
 * document that it serves at `/openapi.json`.
 *
 * ```ts
 * import { createApi } from "./mod.ts";
 *
 * const app = createApi({ monitor, token });
 * Deno.serve({ port: 8047 }, app.fetch);
 * ```
 *
 * Every `/v1/*` route needs `Authorization: Bearer <token>`; `/healthz` never does and `/metrics`
 * does unless `metricsAuth` is `false`. Errors are JSON with a stable code
 * ({@linkcode ErrorCode}). The app speaks Web-standard Request/Response: whoever serves it
 * chooses the transport (the service serves HTTPS off loopback).
 *
 * @module
 */

export { type ApiOptions, createApi } from "./app.ts";
export type { ErrorBody, ErrorCode } from "./errors.ts";
export * from "./parameters.ts";
export * from "./schemas.ts";
export {
  AlertChangeSchema,
  AlertSchema,
  AlertsQuery,
  AlertsSchema,
  AlertStreamHeaders,
  AlertStreamQuery,
  VmAlertsQuery,
} from "./alert_routes.ts";
export type { AlertStreamOptions } from "./alerts.ts";
