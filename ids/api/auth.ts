/**
 * Bearer-token authentication of API requests.
 *
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";
import { ApiError } from "./errors.ts";

const CHALLENGE = { "WWW-Authenticate": "Bearer" };

function sha256(text: string): Uint8Array {
  return createHash("sha256").update(text).digest();
}

/**
 * A middleware that lets a request through only with `Authorization: Bearer <token>`, and
 * otherwise throws a 401 {@linkcode ApiError} carrying a `WWW-Authenticate` challenge.
 *
 * The presented token is compared in constant time: both sides are hashed with SHA-256 first,
 * so neither the comparison nor its length check reveals how much of the token matched.
 *
 * @throws {TypeError} when `token` is empty.
 */
export function bearerAuth(token: string): MiddlewareHandler {
  if (token.length === 0) throw new TypeError("Cannot protect the API: the token is empty");
  const expected = sha256(token);
  return async (c, next) => {
    const header = c.req.header("Authorization");
    const match = header?.match(/^Bearer +(\S+) *$/i);
    if (!match) {
      throw new ApiError(401, {
        code: "unauthorized",
        message: "Cannot authorize the request: it has no bearer token",
      }, CHALLENGE);
    }
    if (!timingSafeEqual(sha256(match[1]), expected)) {
      throw new ApiError(401, {
        code: "unauthorized",
        message: "Cannot authorize the request: the bearer token is wrong",
      }, CHALLENGE);
    }
    await next();
  };
}
