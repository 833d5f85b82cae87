/**
 * How the API reports failures: every error is JSON `{ "error": { "code", "message", ... } }`
 * with a stable code, and the monitor's errors map to HTTP statuses in one place.
 *
 * @module
 */

import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { ZodError } from "zod";
import { AgentUnavailableError, NoSuchProcessError, UnknownVmError } from "../service/mod.ts";

/** The stable codes of API errors. */
export type ErrorCode =
  | "unauthorized"
  | "not_found"
  | "unknown_vm"
  | "unknown_pid"
  | "bad_parameter"
  | "agent_unreachable"
  | "internal";

/** The body of every error response. */
export interface ErrorBody {
  error: {
    code: ErrorCode;
    message: string;
    /** The parameter of a `bad_parameter`. */
    name?: string;
    /** Age of the last good snapshot of an `agent_unreachable`, when there is one. */
    lastSnapshotAgeMs?: number;
  };
}

/** A failure a handler reports to the client as is: its status, code and message. */
export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly body: ErrorBody["error"],
    readonly headers: Record<string, string> = {},
  ) {
    super(body.message);
    this.name = "ApiError";
  }
}

/**
 * The response for an error thrown by a handler or a middleware. Errors that are not the API's
 * or the monitor's are reported through `onInternal` and answered as `internal`, without
 * their message or stack.
 */
export function errorResponse(
  c: Context,
  error: unknown,
  onInternal: (error: unknown) => void,
): Response {
  if (error instanceof ApiError) {
    return c.json({ error: error.body } satisfies ErrorBody, error.status, error.headers);
  }
  if (error instanceof UnknownVmError) {
    return c.json(
      { error: { code: "unknown_vm", message: error.message } } satisfies ErrorBody,
      404,
    );
  }
  if (error instanceof NoSuchProcessError) {
    const message = `No process ${error.pid} in VM "${c.req.param("vm")}"`;
    return c.json({ error: { code: "unknown_pid", message } } satisfies ErrorBody, 404);
  }
  if (error instanceof AgentUnavailableError) {
    const body: ErrorBody = { error: { code: "agent_unreachable", message: error.message } };
    if (error.lastSnapshotAgeMs !== undefined) {
      body.error.lastSnapshotAgeMs = Math.round(error.lastSnapshotAgeMs);
    }
    return c.json(body, 503);
  }
  onInternal(error);
  const message = `Cannot answer ${c.req.method} ${c.req.path}: internal error`;
  return c.json({ error: { code: "internal", message } } satisfies ErrorBody, 500);
}

/** The 422 for a request whose path or query failed validation; names the first bad parameter. */
export function badParameter(target: string, error: ZodError): ApiError {
  const issue = error.issues[0];
  const name = String(issue?.path[0] ?? "");
  const location = target === "param" ? "path" : target;
  return new ApiError(422, {
    code: "bad_parameter",
    message: `Invalid ${location} parameter "${name}": ${issue?.message ?? "invalid value"}`,
    name,
  });
}
