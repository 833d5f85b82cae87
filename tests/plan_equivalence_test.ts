/**
 * The plan interpreter (ids/kernel/testing/plan_interpreter.ts), over which the views' unit tests prove
 * their plans, against the real walker (bpf/plan_walk.h) on this machine's kernel: every plan
 * the views build, whole and selective, and plans made for the walker's edge cases (budgets,
 * stack, step limit, dedupe collisions, bad pointers, sparse windows that fault, a count that
 * wraps), each walked by both over the same memory (tests/plan_walks.ts) and compared record
 * for record, with the stop reason and the counts.
 *
 * This kernel has no loadable modules, and its kallsyms gives no data symbols: the plans of the
 * views that start at one are rooted at a stand-in, real memory of this kernel
 * ({@linkcode standIns}). The walker interprets nothing, so a plan's steps are the view's
 * whatever the memory holds.
 */

import { assert, assertEquals, privilegedTest } from "./support/mod.ts";
import { WalkerPair } from "./plan_walks.ts";
import { type Plan, StopReason } from "../protocol/mod.ts";
import { build, MODES, report, scanContext, viewPlans } from "./plan_context.ts";

privilegedTest("interpretPlan() copies what the walker copies for every view's plan", async () => {
  using pair = await WalkerPair.open();
  const ctx = await scanContext(pair.walker);
  for (const [name, plan] of viewPlans(ctx)) {
    for (const mode of MODES) {
      const built = build(mode, plan);
      assert(built.roots.length > 0, `${name} (${mode}) plans nothing`);
      const agreed = pair.agree(built);
      report(`${name} (${mode})`, agreed);
      assertEquals(agreed.walked.run.stop, StopReason.COMPLETE, `${name} (${mode})`);
      assert(agreed.walked.records.length > 0, `${name} (${mode}) copies nothing`);
    }
  }
});

privilegedTest(
  "interpretPlan() cuts lists, chains, arrays, slots and bytes at their max, edges at the depth",
  async () => {
    using pair = await WalkerPair.open();
    const ctx = await scanContext(pair.walker);
    const every = viewPlans(ctx).at(-1)![1];
    for (const mode of MODES) {
      const plan = build(mode, every);
      for (const max of [1, 3]) {
        const cut: Plan = {
          ...plan,
          nodes: plan.nodes.map((n) => ({
            ...n,
            edges: n.edges.map((e) => ({ ...e, max: Math.min(e.max, max) })),
          })),
        };
        report(`every section (${mode}), max ${max}`, pair.agree(cut));
      }
      for (const maxDepth of [1, 4]) {
        const agreed = pair.agree({ ...plan, maxDepth });
        report(`every section (${mode}), depth ${maxDepth}`, agreed);
        assert(agreed.walked.run.pruned > 0, `depth ${maxDepth}: pruned`);
      }
    }
  },
);
