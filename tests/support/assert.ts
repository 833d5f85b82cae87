/**
 * The few assertions the tests use, on top of `node:assert` (Deno's std is not reachable here).
 *
 * @module
 */

import nodeAssert from "node:assert/strict";

/** Asserts that `value` is truthy. */
export function assert(value: unknown, message = "expected a truthy value"): asserts value {
  nodeAssert.ok(value, message);
}

/** Deep, strict equality. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  if (message === undefined) nodeAssert.deepStrictEqual(actual, expected);
  else nodeAssert.deepStrictEqual(actual, expected, message);
}

type ErrorClass<E extends Error> = abstract new (...args: never[]) => E;

function expectError<E extends Error>(error: unknown, type: ErrorClass<E>, includes?: string): E {
  const e = error as Error;
  nodeAssert.ok(error instanceof type, `expected ${type.name}, got ${e?.name}: ${e?.message}`);
  if (includes) nodeAssert.ok(e.message.includes(includes), `"${e.message}" lacks "${includes}"`);
  return error as E;
}

/** Asserts that `fn` throws an instance of `type` (whose message has `includes`); returns it. */
export function assertThrows<E extends Error>(
  fn: () => unknown,
  type: ErrorClass<E>,
  includes?: string,
): E {
  try {
    fn();
  } catch (error) {
    return expectError(error, type, includes);
  }
  throw new nodeAssert.AssertionError({ message: `expected ${type.name} to be thrown` });
}

/** Asserts that the promise rejects with an instance of `type`; returns the error. */
export async function assertRejects<E extends Error>(
  fn: () => Promise<unknown>,
  type: ErrorClass<E>,
  includes?: string,
): Promise<E> {
  try {
    await fn();
  } catch (error) {
    return expectError(error, type, includes);
  }
  throw new nodeAssert.AssertionError({ message: `expected ${type.name} to be rejected` });
}
