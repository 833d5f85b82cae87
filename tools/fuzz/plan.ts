/**
 * Fuzz target of the plan decoder, as the agent runs it on a PREFETCH.
 *
 * @module
 */

import fc from "fast-check";
import { decodePlan, encodePlan, PLAN_SIZE, PlanError } from "../../protocol/mod.ts";
import { inPlace, mutate, mutation, noise, planBytes } from "./_inputs.ts";
import type { FuzzTarget } from "./types.ts";

/** Plan-sized noise and mutated valid plans, decoded and encoded again as the agent does. */
export const plans: FuzzTarget<Uint8Array> = {
  name: "plan",
  description: "decodePlan (then encodePlan, as the agent does) over plan bytes",
  arbitrary: fc.oneof(
    fc.record({
      seed: fc.integer(),
      extra: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, fc.integer({ min: -2, max: 2 })),
    }).map(
      ({ seed, extra }) => {
        const bytes = noise(seed, PLAN_SIZE + extra);
        if (bytes.length >= 8) bytes.fill(0, 1, 4).fill(0, 5, 8); // small root/node counts
        return bytes;
      },
    ),
    fc.array(inPlace, { minLength: 1, maxLength: 6 }).map((ms) => mutate(planBytes(), ms)),
    fc.array(mutation, { minLength: 1, maxLength: 3 }).map((ms) => mutate(planBytes(), ms)),
    fc.array(
      fc.record({ at: fc.nat({ max: PLAN_SIZE - 4 }), value: fc.nat({ max: 0xffff_ffff }) }),
      { minLength: 1, maxLength: 8 },
    ).map((writes) => {
      const bytes = planBytes().slice();
      const view = new DataView(bytes.buffer);
      for (const w of writes) view.setUint32(w.at & ~3, w.value, true);
      return bytes;
    }),
  ),
  run(bytes) {
    encodePlan(decodePlan(bytes));
  },
  expected: (error) => error instanceof PlanError,
};
