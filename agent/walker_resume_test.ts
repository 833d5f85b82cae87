/**
 * Requests larger than the walker's ring buffer: each run stops when the ring is full, and
 * {@linkcode Walker.resume} continues the request once its records are drained, until the walk
 * ends for another reason. The records must be those one run with a large ring copies.
 */

import { assert, assertEquals, assertThrows, privilegedTest } from "../tests/support/mod.ts";
import { EdgeKind, encodePlan, type Plan, StopReason } from "../protocol/mod.ts";
import { type RunResult, Walker, type WalkLimits } from "./walker.ts";
import { LIMITS, off, ptr, tasksOf, wholeTask } from "./_walk_fixtures.ts";

/** A ring far smaller than the walks below, larger than their largest record. */
const SMALL_RING = 64 << 10;
const LARGE_RING = 64 << 20;

/** What a request copied, over every run it took: `addr:length` per record, in order. */
interface Whole {
  result: RunResult;
  records: string[];
  runs: number;
}

/** Drains `first`'s records, resuming the request until it ends. */
function whole(walker: Walker, first: RunResult): Whole {
  const records: string[] = [];
  let result = first;
  for (let runs = 1;; runs++) {
    walker.drain((addr, bytes) => records.push(`${addr.toString(16)}:${bytes.length}`) > 0);
    const next = walker.resume();
    if (!next) return { result, records, runs };
    result = next;
  }
}

/**
 * A walk of objects that stay put, whatever else the machine runs: init_task copied whole at
 * every level of its own real_parent chain (no dedupe: 65 times), each level also following its
 * children list (init and kthreadd, which never exit) to tasks that dedupe: found at every level,
 * copied once across every run (at the deepest, where the depth prunes their own edges).
 */
function stablePlan(initTask: bigint): Plan {
  const children = {
    kind: EdgeKind.LIST,
    target: 1,
    off: off("task_struct", "children"),
    delta: off("task_struct", "sibling"),
    max: 16,
  };
  return {
    roots: [{ addr: initTask, node: 0 }],
    nodes: [
      { dedupe: false, ranges: wholeTask(), edges: [ptr(0, "real_parent"), children] },
      { dedupe: true, ranges: wholeTask(), edges: [ptr(1, "real_parent")] },
    ],
    maxDepth: 64,
  };
}

function planOnBoth(small: Walker, large: Walker, plan: Plan, limits: WalkLimits) {
  const bytes = encodePlan(plan);
  return {
    small: whole(small, small.walkPlan(bytes, limits)),
    large: whole(large, large.walkPlan(bytes, limits)),
  };
}

privilegedTest(
  "walkPlan() through a ring smaller than the walk copies, resumed, what one large ring does",
  async () => {
    using small = await Walker.open({ ringBytes: SMALL_RING });
    using large = await Walker.open({ ringBytes: LARGE_RING });
    const { root } = tasksOf(large);
    const walks = planOnBoth(small, large, stablePlan(root), LIMITS);
    assertEquals(walks.large.runs, 1);
    assert(walks.small.runs > 2, `${walks.small.runs} runs`);
    assertEquals(walks.small.records, walks.large.records);
    for (const { result, records } of [walks.small, walks.large]) {
      assertEquals([result.stop, result.faults], [StopReason.COMPLETE, 0]);
      assertEquals(result.objects, records.length);
      assertEquals(result.root, root);
    }
    assertEquals(walks.small.result.bytes, walks.large.result.bytes);
    // The depth ends the chain, in the same places.
    assertEquals(walks.small.result.pruned, walks.large.result.pruned);
    assert(walks.small.result.pruned > 0);
    // 65 levels of init_task; init and kthreadd once, though every level but the last finds them.
    const tasks = walks.small.records.map((r) => r.split(":")[0]);
    const initTask = root.toString(16);
    assertEquals(tasks.filter((t) => t === initTask).length, 65);
    assertEquals(new Set(tasks.filter((t) => t !== initTask)).size, 2);
    assertEquals(tasks.length, 65 + 2);
  },
);

privilegedTest(
  "a resumed walkPlan() still stops at its budget, where one large ring stops",
  async () => {
    using small = await Walker.open({ ringBytes: SMALL_RING });
    using large = await Walker.open({ ringBytes: LARGE_RING });
    const { root } = tasksOf(large);
    const all = whole(large, large.walkPlan(encodePlan(stablePlan(root)), LIMITS));
    const maxObjects = all.result.objects - 3;
    const walks = planOnBoth(small, large, stablePlan(root), {
      maxObjects,
      maxBytes: LIMITS.maxBytes,
    });
    assert(walks.small.runs > 2, `${walks.small.runs} runs`);
    assertEquals(walks.small.records, walks.large.records);
    assertEquals(walks.small.result.stop, StopReason.MAX_OBJECTS);
    assertEquals(walks.small.result.objects, maxObjects);
  },
);

privilegedTest("walkTasks() and read() resumed through a small ring miss nothing", async () => {
  using small = await Walker.open({ ringBytes: SMALL_RING });
  using large = await Walker.open({ ringBytes: LARGE_RING });
  let a: Whole | undefined;
  let b: Whole | undefined;
  // Tasks may come and go between the two walks: retry until two agree.
  for (let attempt = 0; attempt < 10; attempt++) {
    a = whole(small, small.walkTasks(LIMITS));
    b = whole(large, large.walkTasks(LIMITS));
    if (a.records.join() === b.records.join()) break;
  }
  assert(a!.runs > 2, `${a!.runs} runs`);
  assertEquals(a!.records, b!.records);
  assertEquals([a!.result.stop, a!.result.objects], [StopReason.COMPLETE, a!.records.length]);

  // A READ is copied a page a record: 64 pages do not fit in 64 KiB with their headers.
  const anchor = small.anchor();
  const read = whole(small, small.read(anchor, 64 * 4096));
  assert(read.runs > 1, `${read.runs} runs`);
  assertEquals([read.result.stop, read.result.objects], [StopReason.COMPLETE, 64]);
  assertEquals(
    read.records,
    Array.from({ length: 64 }, (_, i) => `${(anchor + BigInt(i * 4096)).toString(16)}:4096`),
  );
});

privilegedTest(
  "resume() continues nothing after a complete run, a discard, or a record larger than the ring",
  async () => {
    using walker = await Walker.open({ ringBytes: SMALL_RING });
    const anchor = walker.anchor();
    const done = walker.read(anchor, 64);
    assertEquals(done.stop, StopReason.COMPLETE);
    walker.discard();
    assertEquals(walker.resume(), undefined);

    const cut = walker.read(anchor, 64 * 4096);
    assertEquals(cut.stop, StopReason.RING_FULL);
    assertThrows(() => walker.resume(), TypeError, "still in the ring");
    walker.discard();
    assertEquals(walker.resume(), undefined, "the discarded request is over");

    // Every READ record reserves a page and its header: none fits in a ring of one page.
    using tiny = await Walker.open({ ringBytes: 4096 });
    const never = tiny.read(anchor, 64);
    assertEquals([never.stop, never.objects], [StopReason.RING_FULL, 0]);
    assertEquals(tiny.resume(), undefined);
  },
);
