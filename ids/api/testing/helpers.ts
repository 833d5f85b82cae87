/**
 * What the tests of the API and of what it serves (the console) share: the token their apps accept
 * and the check of error bodies.
 *
 * @module
 */

import { assert, assertEquals } from "../../../tests/support/mod.ts";

export const TOKEN = "correct-horse-battery-staple";
export const AUTH = { Authorization: `Bearer ${TOKEN}` };

/** Asserts a JSON error answer with `status` whose `error` has every field of `error`. */
export async function assertError(
  response: Response,
  status: number,
  error: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  assertEquals(response.status, status);
  assert(response.headers.get("Content-Type")?.startsWith("application/json"));
  const body = await response.json();
  for (const [key, value] of Object.entries(error)) assertEquals(body.error[key], value, key);
  assertEquals(typeof body.error.message, "string");
  return body.error;
}
