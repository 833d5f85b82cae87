/**
 * The shape of a fuzz target.
 *
 * @module
 */

import type fc from "fast-check";

/** One decoder under fuzzing. */
export interface FuzzTarget<T = unknown> {
  name: string;
  /** What is fed to what, in a few words. */
  description: string;
  arbitrary: fc.Arbitrary<T>;
  /** Runs one input. Throws only errors {@linkcode FuzzTarget.expected} accepts, or a bug. */
  run(input: T): void | Promise<void>;
  /** Whether `error` is one of the decoder's documented answers to bad input. */
  expected(error: unknown): boolean;
}

/** A broken promise of a decoder that is not an exception of its own (e.g. a 500 answer). */
export class FuzzPropertyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FuzzPropertyError";
  }
}
