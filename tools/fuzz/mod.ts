/**
 * The decoders `deno task fuzz` runs (`tools/fuzz.ts`), each a {@linkcode FuzzTarget}: an input
 * generator (arbitrary bytes, and valid inputs flipped, rewritten, cut short or repeated) and
 * the run of one input through the decoder as its caller uses it, which may throw only the
 * decoder's documented errors.
 *
 * @module
 */

import { api } from "./api.ts";
import { btf } from "./btf.ts";
import { bpfObjects } from "./bpf_object.ts";
import { agentFrames, idsFrames } from "./frames.ts";
import { plans } from "./plan.ts";
import { processes } from "./processes.ts";
import type { FuzzTarget } from "./types.ts";

export { FuzzPropertyError, type FuzzTarget } from "./types.ts";
export { mutate, type Mutation } from "./_inputs.ts";

/** Every target, in the order `deno task fuzz` runs them. */
export const TARGETS: readonly FuzzTarget<never>[] = [
  agentFrames,
  idsFrames,
  plans,
  bpfObjects,
  btf,
  processes,
  api,
] as FuzzTarget<never>[];
